//! Object identifiers as people read them.

use const_oid::ObjectIdentifier;

/// The registered name of an OID (e.g. `id-aes256-GCM`), else its dotted form.
pub fn name(oid: &ObjectIdentifier) -> String {
    const_oid::db::DB
        .by_oid(oid)
        .map_or_else(|| oid.to_string(), str::to_owned)
}
