//! ISO 3166-1 alpha-2 country codes.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// The officially assigned ISO 3166-1 alpha-2 codes (249), sorted. User-assigned codes such as
/// `XK` and reserved ones such as `EU` or `UK` are not countries here.
const ASSIGNED: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// An officially assigned ISO 3166-1 alpha-2 code: two upper-case ASCII letters (`DE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// The code: `DE`.
    pub fn as_str(&self) -> &str {
        // Only built from an entry of ASSIGNED, which is ASCII.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

/// Why a country code was rejected: a phrase completing "`key` VALUE ...".
pub(crate) fn check(text: &str) -> Result<CountryCode, &'static str> {
    let shape_ok = text.len() == 2 && text.bytes().all(|b| b.is_ascii_uppercase());
    if !shape_ok {
        return Err("is not an ISO 3166-1 alpha-2 code: two upper-case letters such as DE");
    }
    match ASSIGNED.binary_search(&text) {
        Ok(_) => {
            let mut code = [0; 2];
            code.copy_from_slice(text.as_bytes());
            Ok(CountryCode(code))
        }
        Err(_) => Err("is not an assigned ISO 3166-1 alpha-2 code (GB, not UK; no EU or XK)"),
    }
}

impl FromStr for CountryCode {
    type Err = String;

    /// Parses an assigned code exactly (`DE`; not `de` or `DEU`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        check(text).map_err(|reason| format!("{text:?} {reason}"))
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for CountryCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_unique_upper_case_pairs() {
        assert!(ASSIGNED.windows(2).all(|w| w[0] < w[1]));
        assert!(
            ASSIGNED
                .iter()
                .all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
    }

    #[test]
    fn codes() {
        for ok in ["DE", "US", "CN", "TW", "GB", "AE", "SG", "ZW", "AD"] {
            assert_eq!(ok.parse::<CountryCode>().unwrap().as_str(), ok);
        }
        for bad in [
            "de", "DEU", "D1", "", "D", "UK", "EU", "XK", "ZZ", "Dé", " DE",
        ] {
            assert!(bad.parse::<CountryCode>().is_err(), "{bad:?}");
        }
    }
}
