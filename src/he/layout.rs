//! Slot layout: how templates and probes become polynomials so that one polynomial product
//! yields every squared distance at known coefficients.
//!
//! With W = D + 1, a block holds M = floor(N / W) slots. The gallery template b sits in slot
//! j as g = (-2 b_0, ..., -2 b_{D-1}, ||b||^2) written reversed: coefficient jW + D - i holds
//! g_i. The probe a is p = (a_0, ..., a_{D-1}, 1). The product's coefficient jW + D is then
//! sum_i p_i g_i = ||b||^2 - 2 a.b, and the app adds ||a||^2 (which it knows) to get
//! ||a - b||^2. Slot j's product occupies [jW, jW + 2D]; neighbours never reach another
//! readout and the negacyclic wrap of the last slot stays below D (checked by
//! `Params::validate` and tested below).

use super::{Params, Template};

/// The gallery polynomial for a template in slot 0 (shift by X^(jW) to move it to slot j).
pub fn gallery_polynomial(t: &Template, params: &Params) -> Vec<i64> {
    let d = params.dim;
    let mut poly = vec![0i64; params.polynomial_size];
    for (i, &b) in t.values().iter().enumerate() {
        poly[d - i] = -2 * b as i64;
    }
    poly[0] = t.norm_sq();
    poly
}

/// The probe polynomial.
pub fn probe_polynomial(t: &Template, params: &Params) -> Vec<i64> {
    let mut poly = vec![0i64; params.polynomial_size];
    for (i, &a) in t.values().iter().enumerate() {
        poly[i] = a as i64;
    }
    poly[params.dim] = 1;
    poly
}

/// Negacyclic product of integer polynomials (reference computation for tests and checks).
pub fn negacyclic_mul(a: &[i64], b: &[i64]) -> Vec<i64> {
    let n = a.len();
    let mut out = vec![0i64; n];
    for (i, &ai) in a.iter().enumerate() {
        if ai == 0 {
            continue;
        }
        for (j, &bj) in b.iter().enumerate() {
            let k = i + j;
            if k < n {
                out[k] += ai * bj;
            } else {
                out[k - n] -= ai * bj;
            }
        }
    }
    out
}

/// Multiplies an integer polynomial by X^shift (negacyclic), shift < N.
pub fn shift_polynomial(a: &[i64], shift: usize) -> Vec<i64> {
    let n = a.len();
    let mut out = vec![0i64; n];
    for (i, &v) in a.iter().enumerate() {
        let k = i + shift;
        if k < n {
            out[k] = v;
        } else {
            out[k - n] = -v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(params: &Params, f: impl Fn(usize) -> i32) -> Template {
        Template::new((0..params.dim).map(f).collect(), params).unwrap()
    }

    #[test]
    fn a_full_block_product_reads_every_distance_exactly() {
        let p = Params::v1();
        let m = p.slots_per_block();
        let q = p.q;
        // Extremes in every slot: the worst case for spill-over into neighbours.
        let gallery: Vec<Template> = (0..m)
            .map(|j| template(&p, |i| if (i + j) % 2 == 0 { q } else { -q }))
            .collect();
        let probe = template(&p, |i| if i % 3 == 0 { -q } else { q });
        let mut block = vec![0i64; p.polynomial_size];
        for (j, t) in gallery.iter().enumerate() {
            let shifted = shift_polynomial(&gallery_polynomial(t, &p), j * p.slot_width());
            for (b, s) in block.iter_mut().zip(shifted) {
                *b += s;
            }
        }
        let product = negacyclic_mul(&probe_polynomial(&probe, &p), &block);
        for (j, t) in gallery.iter().enumerate() {
            let got = product[p.slot_readout(j)] + probe.norm_sq();
            assert_eq!(got, probe.distance_sq(t), "slot {j}");
        }
    }
}
