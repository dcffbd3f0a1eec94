//! A small RFC 4180 reader for `accelerators.csv` (quoted fields, doubled quotes, CRLF or LF).

use std::collections::BTreeMap;

/// Parses CSV text into rows of fields.
pub fn parse(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                quoted = true;
                at_field_start = false;
            }
            '"' => return Err(format!("stray quote in row {}", rows.len() + 1)),
            ',' => {
                row.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                at_field_start = true;
            }
            _ => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

/// Parses CSV with a header row into maps from column name to value.
pub fn records(text: &str) -> Result<Vec<BTreeMap<String, String>>, String> {
    let mut rows = parse(text)?.into_iter();
    let header = rows.next().ok_or("empty CSV")?;
    rows.enumerate()
        .map(|(i, row)| {
            if row.len() != header.len() {
                return Err(format!(
                    "row {} has {} fields, the header {}",
                    i + 2,
                    row.len(),
                    header.len()
                ));
            }
            Ok(header.iter().cloned().zip(row).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoted_fields() {
        let rows = super::parse("a,b\n\"x, \"\"y\"\"\",\r\n").unwrap();
        assert_eq!(rows, vec![vec!["a", "b"], vec!["x, \"y\"", ""]]);
        assert!(super::parse("a\"b\n").is_err());
        assert!(super::parse("\"ab\n").is_err());
    }
}
