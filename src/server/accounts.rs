//! The server's own tables in the matcher's store file (`crate::matcher::Store`): the
//! hashes of one-time registration codes and of the admin token. Only `blindface serve`
//! uses them; the built-in matcher's store never holds them.
//!
//! - `invites_v1`: key SHA-256 of a one-time registration code, value its creation time
//!   (Unix seconds); removed in the transaction that registers with it ([`admit`]).
//! - `admin_v1`: `token` = SHA-256 of the admin token.
//!
//! Each table is created by its first write; reading one that was never written is
//! reading an empty table.

// redb::Error is large; it only lives inside the store's transactions and is converted
// there at once.
#![allow(clippy::result_large_err)]

use redb::{TableDefinition, TableError};

use crate::matcher::{MatcherError, Store};

const INVITES: TableDefinition<&[u8], u64> = TableDefinition::new("invites_v1");
const ADMIN: TableDefinition<&str, &[u8]> = TableDefinition::new("admin_v1");
const ADMIN_TOKEN: &str = "token";

/// Records one-time registration codes (their hashes), durably.
pub fn add_invites(store: &Store, hashes: &[[u8; 32]], now: u64) -> Result<(), MatcherError> {
    store.write(|txn| {
        let mut t = txn.open_table(INVITES)?;
        for h in hashes {
            t.insert(h.as_slice(), now)?;
        }
        Ok(())
    })
}

/// The admission step of a registration, run in its transaction
/// (`crate::matcher::Galleries::register_tenant`): consumes the one-time code whose hash
/// is `invite` (`None`: open registration, always admitted); `false` if that code is
/// unknown or already used.
pub fn admit(
    invite: Option<[u8; 32]>,
) -> impl FnOnce(&redb::WriteTransaction) -> Result<bool, redb::Error> {
    move |txn| match invite {
        None => Ok(true),
        Some(code) => Ok(txn.open_table(INVITES)?.remove(code.as_slice())?.is_some()),
    }
}

/// The SHA-256 of the admin token, once one was set.
pub fn admin_token_hash(store: &Store) -> Result<Option<[u8; 32]>, MatcherError> {
    let stored = store.read(|txn| match txn.open_table(ADMIN) {
        Ok(t) => Ok(t.get(ADMIN_TOKEN)?.map(|v| v.value().to_vec())),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    })?;
    stored
        .map(|v| {
            v.try_into().map_err(|_| MatcherError::Store {
                path: store.path().display().to_string(),
                detail: "the admin token record is corrupt".into(),
            })
        })
        .transpose()
}

/// Sets (or replaces) the admin token's hash, durably.
pub fn set_admin_token_hash(store: &Store, hash: &[u8; 32]) -> Result<(), MatcherError> {
    store.write(|txn| {
        txn.open_table(ADMIN)?
            .insert(ADMIN_TOKEN, hash.as_slice())?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use redb::ReadableTableMetadata;

    use super::*;
    use crate::he::Params;
    use crate::matcher::Galleries;

    /// Unused registration codes.
    fn invite_count(store: &Store) -> u64 {
        store
            .read(|txn| match txn.open_table(INVITES) {
                Ok(t) => Ok(t.len()?),
                Err(TableError::TableDoesNotExist(_)) => Ok(0),
                Err(e) => Err(e.into()),
            })
            .unwrap()
    }

    #[test]
    fn a_code_registers_once_and_the_admin_hash_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let galleries = Galleries::open(dir.path(), &Params::v1(), 10).unwrap();
        let store = galleries.store();
        // A store the server never wrote to reads as empty.
        assert_eq!(invite_count(store), 0);
        assert_eq!(admin_token_hash(store).unwrap(), None);

        add_invites(store, &[[1; 32], [2; 32]], 7).unwrap();
        assert_eq!(invite_count(store), 2);
        let register = |tenant: &str, code: Option<[u8; 32]>| {
            galleries
                .register_tenant(tenant, &[9; 32], admit(code))
                .unwrap()
        };
        assert!(register("a", Some([1; 32])));
        assert!(!register("b", Some([1; 32])), "a code works once");
        assert!(!register("c", Some([3; 32])), "an unknown code does not");
        assert!(register("d", None), "open registration");
        assert_eq!(invite_count(store), 1);
        let tenants: Vec<String> = store.tenants().unwrap().into_iter().map(|t| t.0).collect();
        assert_eq!(tenants, ["a", "d"]);

        set_admin_token_hash(store, &[5; 32]).unwrap();
        set_admin_token_hash(store, &[6; 32]).unwrap();
        assert_eq!(admin_token_hash(store).unwrap(), Some([6; 32]));
    }
}
