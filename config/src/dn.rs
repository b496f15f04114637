//! Distinguished names in one unambiguous form.
//!
//! A DN printed by joining attribute values without escaping is ambiguous: a certificate whose
//! CN is `x, O=plexgate` would print exactly as `CN=x, O=plexgate`, so any comparison or
//! namespace built on such strings lets one subject pose as another. [`Dn`] keeps the parsed
//! structure (RDNs of attribute type/value pairs) and prints values escaped as RFC 4514 says,
//! so two DNs print alike only when they are the same name. Certificates and configured or
//! passed-on DN strings go through the same type, so they compare on the same form.

use std::fmt;

/// A distinguished name: RDNs most specific first (as printed), each a sorted set of
/// `(TYPE, value)` pairs; types upper-cased abbreviations (`CN`, `O`) or dotted OIDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dn {
    rdns: Vec<Vec<(String, String)>>,
}

/// Why a DN string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 4514 distinguished name ({0})")]
pub struct DnError(pub String);

impl Dn {
    /// The subject DN of a DER certificate; `None` when it cannot be parsed or an attribute
    /// value is not a string.
    pub fn of_certificate(der: &[u8]) -> Option<Dn> {
        let (_, parsed) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut rdns = Vec::new();
        for rdn in parsed.subject().iter_rdn() {
            let mut set = Vec::new();
            for atv in rdn.iter() {
                set.push((attribute_type(&atv.attr_type().to_id_string()), atv.as_str().ok()?.to_owned()));
            }
            set.sort();
            rdns.push(set);
        }
        rdns.reverse();
        Some(Dn { rdns })
    }

    /// Reads an RFC 4514 string (`CN=a\, b, O=x`; `+` joins multi-valued RDNs, `,` or `;`
    /// separates RDNs, `\<char>` and `\<hex><hex>` escape). Whitespace around separators is
    /// insignificant; attribute types compare case-insensitively.
    pub fn parse(text: &str) -> Result<Dn, DnError> {
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        let mut rdns = Vec::new();
        let mut set = Vec::new();
        if text.trim().is_empty() {
            return Err(DnError("empty".to_owned()));
        }
        loop {
            while chars.get(i) == Some(&' ') {
                i += 1;
            }
            let start = i;
            while i < chars.len() && chars[i] != '=' {
                if matches!(chars[i], ',' | ';' | '+' | '\\' | '"') {
                    return Err(DnError(format!("`{}` in an attribute type", chars[i])));
                }
                i += 1;
            }
            let ty: String = chars[start..i].iter().collect::<String>().trim().to_owned();
            if ty.is_empty() || i == chars.len() {
                return Err(DnError("an attribute without `TYPE=`".to_owned()));
            }
            i += 1;
            let (value, next) = value(&chars, i)?;
            i = next;
            set.push((attribute_type(&ty), value));
            match chars.get(i) {
                None => break,
                Some('+') => {}
                Some(_) => {
                    set.sort();
                    rdns.push(std::mem::take(&mut set));
                }
            }
            i += 1;
        }
        set.sort();
        rdns.push(set);
        Ok(Dn { rdns })
    }
}

/// One attribute value from `i` to the next unescaped separator; returns it and the index of
/// that separator (or the end).
fn value(chars: &[char], mut i: usize) -> Result<(String, usize), DnError> {
    while chars.get(i) == Some(&' ') {
        i += 1;
    }
    if chars.get(i) == Some(&'#') {
        return Err(DnError("BER-encoded (`#...`) values are not supported".to_owned()));
    }
    let mut bytes: Vec<u8> = Vec::new();
    let mut significant = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ',' | ';' | '+' => break,
            '"' | '<' | '>' => return Err(DnError(format!("unescaped `{c}` in a value"))),
            '\\' => {
                let hex = |c: Option<&char>| c.and_then(|c| c.to_digit(16));
                match (chars.get(i + 1), hex(chars.get(i + 1)), hex(chars.get(i + 2))) {
                    (_, Some(h), Some(l)) => {
                        bytes.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    (Some(&e), _, _) if "\"+,;<>\\#= ".contains(e) => {
                        bytes.push(e as u8);
                        i += 2;
                    }
                    _ => return Err(DnError("a `\\` escaping nothing it may escape".to_owned())),
                }
                significant = bytes.len();
                continue;
            }
            _ => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                if c != ' ' {
                    significant = bytes.len();
                }
            }
        }
        i += 1;
    }
    bytes.truncate(significant);
    let text = String::from_utf8(bytes).map_err(|_| DnError("escaped bytes that are not UTF-8".to_owned()))?;
    Ok((text, i))
}

/// The printed form of an attribute type: the registry's abbreviation for a known OID (so
/// `2.5.4.3`, `OID.2.5.4.3` and `cn` all read `CN`), upper-cased.
fn attribute_type(ty: &str) -> String {
    let bare = ty.strip_prefix("OID.").or_else(|| ty.strip_prefix("oid.")).unwrap_or(ty);
    if bare.starts_with(|c: char| c.is_ascii_digit())
        && let Ok(oid) = bare.parse::<x509_parser::der_parser::Oid<'static>>()
        && let Ok(abbrev) = x509_parser::objects::oid2abbrev(&oid, x509_parser::objects::oid_registry())
    {
        return abbrev.to_ascii_uppercase();
    }
    bare.to_ascii_uppercase()
}

/// Writes `value` escaped per RFC 4514 (and every control character as `\XX`), so a printed
/// value never holds an unescaped separator.
fn escape(value: &str, out: &mut fmt::Formatter<'_>) -> fmt::Result {
    let last = value.chars().count().saturating_sub(1);
    for (n, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => write!(out, "\\{c}")?,
            '#' if n == 0 => out.write_str("\\#")?,
            ' ' if n == 0 || n == last => out.write_str("\\ ")?,
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    write!(out, "\\{b:02X}")?;
                }
            }
            c => write!(out, "{c}")?,
        }
    }
    Ok(())
}

impl fmt::Display for Dn {
    /// `CN=a\, b, O=x`: RDNs joined by `, ` (as Java's `X500Principal.toString()`), values
    /// escaped, multi-valued RDNs joined by `+`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.rdns.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            for (j, (ty, value)) in rdn.iter().enumerate() {
                if j > 0 {
                    f.write_str("+")?;
                }
                write!(f, "{ty}=")?;
                escape(value, f)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Dn::parse(s).unwrap().to_string()
    }

    #[test]
    fn spacing_and_type_case_do_not_matter_but_order_does() {
        assert_eq!(canon("CN=a, O=b"), canon("cn=a,O=b"));
        assert_eq!(canon("CN=a, O=b"), "CN=a, O=b");
        assert_ne!(canon("CN=a, O=b"), canon("O=b, CN=a"));
        assert_eq!(canon("2.5.4.3=a"), "CN=a");
    }

    #[test]
    fn escaped_separators_stay_values() {
        let dn = Dn::parse(r"CN=x\, O=plexgate").unwrap();
        assert_eq!(dn.rdns.len(), 1);
        assert_ne!(dn, Dn::parse("CN=x, O=plexgate").unwrap());
        assert_eq!(dn.to_string(), r"CN=x\, O=plexgate");
        assert_eq!(canon(r"CN=\#a\2Cb\ "), r"CN=\#a\,b\ ");
        assert_eq!(canon(r"CN=a\+b+O=c"), r"CN=a\+b+O=c");
        assert_ne!(canon(r"CN=a+O=c"), canon(r"CN=a\+O=c"));
    }

    #[test]
    fn malformed_strings_are_refused() {
        for bad in ["", "CN", "=x", "CN=a, b", "CN=#0403", r"CN=a\q", "CN=a<b"] {
            assert!(Dn::parse(bad).is_err(), "{bad}");
        }
    }
}
