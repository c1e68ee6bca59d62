//! From decrypted distances to the rows a user reads: each distance gets its person's
//! name (labels are decrypted app-side), rows are sorted best (smallest distance) first,
//! and [`best_per_person`] keeps each person's best template. Verdicts are then a
//! comparison of `distance_sq` with the threshold, on the app side.

use std::collections::{BTreeMap, HashSet};

use crate::he::{to_float_l2, Distance, Params, TemplateId};

/// One decrypted distance with its name.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonDistance {
    pub name: String,
    pub id: TemplateId,
    /// Exact squared distance between quantised templates.
    pub distance_sq: i64,
    /// Float L2 units (the threshold's scale).
    pub l2: f32,
}

/// Sorts `distances` best first (ties by id) and names them. Ids without a name show as
/// `(id N)`.
pub fn rank(
    distances: &[Distance],
    names: &BTreeMap<TemplateId, String>,
    params: &Params,
) -> Vec<PersonDistance> {
    let mut sorted: Vec<&Distance> = distances.iter().collect();
    sorted.sort_by_key(|d| (d.distance_sq, d.id));
    sorted
        .into_iter()
        .map(|d| PersonDistance {
            name: names
                .get(&d.id)
                .cloned()
                .unwrap_or_else(|| format!("(id {})", d.id)),
            id: d.id,
            distance_sq: d.distance_sq,
            l2: to_float_l2(d.distance_sq, params),
        })
        .collect()
}

/// The first (best) row of each name, in order: a person's verdict uses their best
/// template.
pub fn best_per_person(rows: &[PersonDistance]) -> Vec<PersonDistance> {
    let mut seen = HashSet::new();
    rows.iter()
        .filter(|r| seen.insert(r.name.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_first_and_one_row_per_person() {
        let p = Params::v1();
        let d = |id, distance_sq| Distance {
            id: TemplateId(id),
            distance_sq,
        };
        let distances = [d(1, 9000), d(2, 3000), d(3, 5000), d(4, 100)];
        let names: BTreeMap<_, _> = [(1, "Ann"), (2, "Bob"), (3, "Ann")]
            .into_iter()
            .map(|(i, n)| (TemplateId(i), n.to_string()))
            .collect();
        let all = rank(&distances, &names, &p);
        let order: Vec<_> = all.iter().map(|r| (r.id.0, r.name.as_str())).collect();
        assert_eq!(order, [(4, "(id 4)"), (2, "Bob"), (3, "Ann"), (1, "Ann")]);
        assert_eq!(all[1].l2, to_float_l2(3000, &p));
        let best = best_per_person(&all);
        let ids: Vec<_> = best.iter().map(|r| r.id.0).collect();
        assert_eq!(ids, [4, 2, 3]);
    }
}
