//! A minimal, bounded DER walk of SubjectPublicKeyInfo (RFC 5280 §4.1.2.7), enough to tell an
//! Ed25519 (RFC 8410), P-256 or P-384 (RFC 5480) key and take its bytes. No indexing: every
//! step is a `split_first` or `split_at_checked`.

use super::Alg;

/// Largest SubjectPublicKeyInfo read, in bytes (a P-384 one is 120).
pub const MAX_SPKI_BYTES: usize = 1024;

const TAG_SEQUENCE: u8 = 0x30;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OID: u8 = 0x06;

/// 1.3.101.112, id-Ed25519.
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
/// 1.2.840.10045.2.1, id-ecPublicKey.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// 1.2.840.10045.3.1.7, secp256r1.
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// 1.3.132.0.34, secp384r1.
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// What was wrong with the SubjectPublicKeyInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpkiProblem {
    /// Not the DER shape of a SubjectPublicKeyInfo.
    Malformed,
    /// Well formed, but an algorithm or curve other than Ed25519, P-256 and P-384.
    Unsupported,
}

/// Reads `der` as a SubjectPublicKeyInfo: the algorithm its key is for, and the key bytes
/// (32 bytes for Ed25519, the SEC 1 point for ECDSA).
pub(crate) fn parse(der: &[u8]) -> Result<(Alg, &[u8]), SpkiProblem> {
    if der.len() > MAX_SPKI_BYTES {
        return Err(SpkiProblem::Malformed);
    }
    let mut outer = Reader(der);
    let spki = outer.tlv(TAG_SEQUENCE)?;
    outer.end()?;
    let mut spki = Reader(spki);
    let algorithm = spki.tlv(TAG_SEQUENCE)?;
    let bits = spki.tlv(TAG_BIT_STRING)?;
    spki.end()?;
    let mut algorithm = Reader(algorithm);
    let oid = algorithm.tlv(TAG_OID)?;
    let alg = if oid == OID_ED25519 {
        // RFC 8410 §3: the parameters MUST be absent.
        algorithm.end()?;
        Alg::EdDSA
    } else if oid == OID_EC_PUBLIC_KEY {
        let curve = algorithm.tlv(TAG_OID)?;
        algorithm.end()?;
        match curve {
            OID_P256 => Alg::ES256,
            OID_P384 => Alg::ES384,
            _ => return Err(SpkiProblem::Unsupported),
        }
    } else {
        return Err(SpkiProblem::Unsupported);
    };
    // A key is a whole number of bytes: zero unused bits.
    let key = match bits.split_first() {
        Some((0, key)) => key,
        _ => return Err(SpkiProblem::Malformed),
    };
    Ok((alg, key))
}

/// The DER prefix that, followed by the key bytes, is the SubjectPublicKeyInfo of `alg`.
pub(crate) fn prefix(alg: Alg) -> &'static [u8] {
    match alg {
        Alg::EdDSA => &[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ],
        Alg::ES256 => &[
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ],
        Alg::ES384 => &[
            0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
        ],
    }
}

/// A cursor over DER that cannot overrun.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The value of the next element, which must have tag `tag` and a minimal definite length.
    fn tlv(&mut self, tag: u8) -> Result<&'a [u8], SpkiProblem> {
        let (&found, rest) = self.0.split_first().ok_or(SpkiProblem::Malformed)?;
        if found != tag {
            return Err(SpkiProblem::Malformed);
        }
        let (&first, mut rest) = rest.split_first().ok_or(SpkiProblem::Malformed)?;
        let len = match first {
            0..=0x7f => usize::from(first),
            0x81 => {
                let (&b, r) = rest.split_first().ok_or(SpkiProblem::Malformed)?;
                rest = r;
                if b < 0x80 {
                    return Err(SpkiProblem::Malformed);
                }
                usize::from(b)
            }
            0x82 => {
                let ([hi, lo], r) = rest
                    .split_first_chunk::<2>()
                    .ok_or(SpkiProblem::Malformed)?;
                rest = r;
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                if len < 0x100 {
                    return Err(SpkiProblem::Malformed);
                }
                len
            }
            // Longer lengths exceed MAX_SPKI_BYTES; 0x80 (indefinite) is not DER.
            _ => return Err(SpkiProblem::Malformed),
        };
        let (value, rest) = rest.split_at_checked(len).ok_or(SpkiProblem::Malformed)?;
        self.0 = rest;
        Ok(value)
    }

    /// Nothing may follow.
    fn end(&self) -> Result<(), SpkiProblem> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(SpkiProblem::Malformed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spki(alg: Alg, key: &[u8]) -> Vec<u8> {
        [prefix(alg), key].concat()
    }

    #[test]
    fn reads_each_supported_algorithm() {
        let ed = spki(Alg::EdDSA, &[7; 32]);
        assert_eq!(parse(&ed), Ok((Alg::EdDSA, &[7u8; 32][..])));
        let p256 = spki(Alg::ES256, &[4; 65]);
        assert_eq!(parse(&p256), Ok((Alg::ES256, &[4u8; 65][..])));
        let p384 = spki(Alg::ES384, &[4; 97]);
        assert_eq!(parse(&p384), Ok((Alg::ES384, &[4u8; 97][..])));
    }

    #[test]
    fn rejects_truncation_trailing_data_and_bad_lengths() {
        let ed = spki(Alg::EdDSA, &[7; 32]);
        for cut in 0..ed.len() {
            assert_eq!(parse(ed.get(..cut).unwrap()), Err(SpkiProblem::Malformed));
        }
        let mut trailing = ed.clone();
        trailing.push(0);
        assert_eq!(parse(&trailing), Err(SpkiProblem::Malformed));
        // Non-minimal length 0x81 0x2a.
        let mut long_form = vec![0x30, 0x81, 0x2a];
        long_form.extend_from_slice(ed.get(2..).unwrap());
        assert_eq!(parse(&long_form), Err(SpkiProblem::Malformed));
        // Indefinite length.
        assert_eq!(parse(&[0x30, 0x80, 0, 0]), Err(SpkiProblem::Malformed));
        // Unused bits in the key's BIT STRING.
        let mut unused = ed;
        if let Some(b) = unused.get_mut(11) {
            *b = 1;
        }
        assert_eq!(parse(&unused), Err(SpkiProblem::Malformed));
        assert_eq!(
            parse(&vec![0x30; MAX_SPKI_BYTES + 1]),
            Err(SpkiProblem::Malformed)
        );
    }

    #[test]
    fn rejects_other_algorithms() {
        // rsaEncryption with NULL parameters.
        let rsa = [
            0x30, 0x12, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
            0x01, 0x05, 0x00, 0x03, 0x01, 0x00,
        ];
        assert_eq!(parse(&rsa), Err(SpkiProblem::Unsupported));
        // id-ecPublicKey on secp521r1.
        let p521 = [
            0x30, 0x15, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x05, 0x2b, 0x81, 0x04, 0x00, 0x23, 0x03, 0x01, 0x00,
        ];
        assert_eq!(parse(&p521), Err(SpkiProblem::Unsupported));
    }
}
