//! `tppguard-verifier licence revoke`: the licence authority's signed revocation of a licence,
//! made offline with the licence-signing key (the same signer and chain as `licence sign`).

use std::io::Write;

use tppguard_proto::jws::{self, Header};
use tppguard_proto::licence::revocation::{LICENCE_REVOCATION_TYP, LicenceRevocation};
use tppguard_proto::text::Escaped;

use super::{Signer, format_rfc3339, load_signer};
use crate::cli::LicenceRevokeArgs;
use crate::error::Error;

/// Signs the revocation `args` describe; writes the token to `--out` (and says so) or to `out`.
pub(super) fn run(args: &LicenceRevokeArgs, out: &mut dyn Write, now: i64) -> Result<(), Error> {
    let at = args.at.unwrap_or(now);
    let revocation = LicenceRevocation::new(&args.licence, &args.reason, at)
        .map_err(|source| Error::InvalidRevocation { source })?;
    let Signer { key, x5c, subject } = load_signer(&args.dir)?;
    let header = Header::new(key.alg())
        .with_typ(LICENCE_REVOCATION_TYP)
        .with_x5c(x5c);
    let payload = revocation.to_json()?;
    let token = jws::sign(&header, &payload, &key).map_err(Error::Sign)?;
    match &args.out {
        Some(path) => {
            crate::pki::write_public(path, format!("{token}\n").as_bytes())?;
            writeln!(
                out,
                "revoked licence {} at {} (\"{}\")\n  signed by            {} ({})\nwrote {}",
                Escaped(revocation.licence_id()),
                format_rfc3339(revocation.revoked_at()),
                Escaped(revocation.reason()),
                Escaped(&subject),
                key.alg(),
                Escaped(&path.display().to_string()),
            )?;
        }
        None => writeln!(out, "{token}")?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::TrustAnchors;
    use crate::licence::verify_licence_revocation;

    #[test]
    fn a_revocation_signed_offline_verifies_against_the_licence_authority() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::unix_now().unwrap();
        crate::pki::init(dir.path(), now).unwrap();
        let trust = TrustAnchors::from_trust_toml(&dir.path().join("verifier/trust.toml")).unwrap();
        let args = LicenceRevokeArgs {
            dir: dir.path().join(crate::pki::LICENCE_AUTHORITY_DIR),
            licence: "LIC-1".to_owned(),
            reason: "terms breached".to_owned(),
            at: Some(1_800_000_000),
            out: None,
        };
        let mut out = Vec::new();
        run(&args, &mut out, 1_700_000_000).unwrap();
        let token = String::from_utf8(out).unwrap();
        let v = verify_licence_revocation(token.trim(), &trust, now).unwrap();
        assert_eq!(v.revocation().licence_id(), "LIC-1");
        assert_eq!(v.revocation().revoked_at(), 1_800_000_000);
        assert_eq!(v.signer_subject(), "CN=tppguard licence signer");
        // A revocation is not a licence, nor a licence a revocation.
        assert_eq!(
            crate::licence::verify_licence(token.trim(), &trust, now)
                .unwrap_err()
                .code(),
            "wrong_typ"
        );
        let bad = LicenceRevokeArgs {
            reason: "two\nlines".to_owned(),
            ..args
        };
        assert!(matches!(
            run(&bad, &mut Vec::new(), 0),
            Err(Error::InvalidRevocation { .. })
        ));
    }
}
