//! Eureka's XML, read into and written from the JSON shape Eureka's JSON codec uses, so the
//! registration reader and the renderers exist once:
//! - an element with only text is a string (`<hostName>h</hostName>` -> `"h"`);
//! - attributes are `@name` keys and the text beside them `$`
//!   (`<port enabled="true">8080</port>` -> `{"$":"8080","@enabled":"true"}`);
//! - child elements are keys; a repeated child is an array;
//! - metadata keys are element names as XStream (Eureka's Java codec) writes them, with `_`
//!   doubled (`apiml.routes.api__v1.gatewayUrl` is the key `apiml.routes.api_v1.gatewayUrl`).
//!
//! No DTDs and no entities beyond XML's five and character references (so no entity
//! expansion attacks); depth and element count are bounded.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

use crate::error::DiscoveryError;

/// Deepest nesting read (an instance is four deep).
const MAX_DEPTH: usize = 16;
/// Most elements in one document.
const MAX_ELEMENTS: usize = 20_000;

fn bad(why: impl std::fmt::Display) -> DiscoveryError {
    DiscoveryError::BadBody(format!("XML: {why}"))
}

/// Reads a document; returns its root element's name and value.
pub fn parse(text: &str) -> Result<(String, Value), DiscoveryError> {
    let mut reader = Reader::from_str(text);
    let mut count = 0usize;
    loop {
        match reader.read_event().map_err(bad)? {
            Event::Start(start) => {
                let name = element_name(&start)?;
                let value = element(&mut reader, &start, &name, 1, &mut count)?;
                return end(&mut reader).map(|()| (name, value));
            }
            Event::Empty(start) => {
                let root = (element_name(&start)?, leaf(&start, String::new())?);
                return end(&mut reader).map(|()| root);
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Text(t) if t.xml10_content().trim().is_empty() => {}
            Event::DocType(_) => return Err(bad("a DOCTYPE is not accepted")),
            Event::Eof => return Err(bad("no root element")),
            _ => return Err(bad("text before the root element")),
        }
    }
}

/// After the root: nothing but whitespace, comments or processing instructions.
fn end(reader: &mut Reader<&[u8]>) -> Result<(), DiscoveryError> {
    loop {
        match reader.read_event().map_err(bad)? {
            Event::Eof => return Ok(()),
            Event::Text(t) if t.xml10_content().trim().is_empty() => {}
            Event::Comment(_) | Event::PI(_) => {}
            _ => return Err(bad("content after the root element")),
        }
    }
}

fn element_name(start: &BytesStart<'_>) -> Result<String, DiscoveryError> {
    Ok(AsRef::<str>::as_ref(&start.local_name()).to_owned())
}

fn attributes(start: &BytesStart<'_>, into: &mut Map<String, Value>) -> Result<(), DiscoveryError> {
    for attr in start.attributes() {
        let attr = attr.map_err(bad)?;
        let key = AsRef::<str>::as_ref(&attr.key.local_name()).to_owned();
        // XML's five entities and character references only (no DTD entities).
        let value = attr.normalized_value(quick_xml::XmlVersion::Implicit1_0).map_err(bad)?.into_owned();
        into.insert(format!("@{key}"), Value::String(value));
    }
    Ok(())
}

fn leaf(start: &BytesStart<'_>, text: String) -> Result<Value, DiscoveryError> {
    let mut o = Map::new();
    attributes(start, &mut o)?;
    if o.is_empty() {
        return Ok(Value::String(text));
    }
    o.insert("$".to_owned(), Value::String(text));
    Ok(Value::Object(o))
}

fn reference(name: &str) -> Result<char, DiscoveryError> {
    Ok(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        _ => {
            let code = if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                u32::from_str_radix(hex, 16).ok()
            } else {
                name.strip_prefix('#').and_then(|d| d.parse::<u32>().ok())
            };
            return code.and_then(char::from_u32).ok_or_else(|| bad(format!("unknown entity &{name};")));
        }
    })
}

fn element(
    reader: &mut Reader<&[u8]>,
    start: &BytesStart<'_>,
    name: &str,
    depth: usize,
    count: &mut usize,
) -> Result<Value, DiscoveryError> {
    let metadata = name == "metadata";
    *count += 1;
    if depth > MAX_DEPTH || *count > MAX_ELEMENTS {
        return Err(bad(format!("deeper than {MAX_DEPTH} or more than {MAX_ELEMENTS} elements")));
    }
    let mut text = String::new();
    let mut children = Map::new();
    loop {
        match reader.read_event().map_err(bad)? {
            Event::Start(child) => {
                let child_name = element_name(&child)?;
                let value = element(reader, &child, &child_name, depth + 1, count)?;
                push(&mut children, key(child_name, metadata), value);
            }
            Event::Empty(child) => {
                *count += 1;
                let child_name = element_name(&child)?;
                let value = leaf(&child, String::new())?;
                push(&mut children, key(child_name, metadata), value);
            }
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::CData(c) => text.push_str(&c.into_inner()),
            Event::GeneralRef(r) => text.push(reference(&r.xml10_content())?),
            Event::End(_) => break,
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => return Err(bad("the document ends inside an element")),
            Event::Decl(_) | Event::DocType(_) => return Err(bad("a declaration inside an element")),
        }
    }
    if children.is_empty() {
        return leaf(start, text);
    }
    attributes(start, &mut children)?;
    if !text.trim().is_empty() {
        children.insert("$".to_owned(), Value::String(text));
    }
    Ok(Value::Object(children))
}

fn key(name: String, metadata: bool) -> String {
    if metadata { name.replace("__", "_") } else { name }
}

fn push(children: &mut Map<String, Value>, name: String, value: Value) {
    match children.get_mut(&name) {
        None => {
            children.insert(name, value);
        }
        Some(Value::Array(items)) => items.push(value),
        Some(first) => {
            let first = first.take();
            children.insert(name, Value::Array(vec![first, value]));
        }
    }
}

/// Writes `value` as the element `name` (the inverse of [`parse`] for Eureka's shapes).
pub fn render(name: &str, value: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    write(&mut out, name, value);
    out
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn write(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| write(out, name, item)),
        Value::Object(o) => {
            out.push('<');
            out.push_str(name);
            for (k, v) in o.iter().filter(|(k, _)| k.starts_with('@')) {
                out.push_str(&format!(" {}=\"{}\"", &k[1..], quick_xml::escape::escape(scalar_text(v))));
            }
            out.push('>');
            if let Some(text) = o.get("$") {
                out.push_str(&quick_xml::escape::escape(scalar_text(text)));
            }
            for (k, v) in o.iter().filter(|(k, _)| !k.starts_with('@') && k.as_str() != "$") {
                if name == "metadata" {
                    write(out, &k.replace('_', "__"), v);
                } else {
                    write(out, k, v);
                }
            }
            out.push_str(&format!("</{name}>"));
        }
        scalar => out.push_str(&format!("<{name}>{}</{name}>", quick_xml::escape::escape(scalar_text(scalar)))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::instance::{Instance, Status, Times};

    /// What Eureka's Java client sends (XStream's shape).
    const JAVA_REGISTRATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<instance>
  <instanceId>localhost:discoverableclient:10012</instanceId>
  <hostName>localhost</hostName>
  <app>DISCOVERABLECLIENT</app>
  <ipAddr>127.0.0.1</ipAddr>
  <status>UP</status>
  <overriddenstatus>UNKNOWN</overriddenstatus>
  <port enabled="false">10012</port>
  <securePort enabled="true">10012</securePort>
  <countryId>1</countryId>
  <dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"><name>MyOwn</name></dataCenterInfo>
  <leaseInfo><renewalIntervalInSecs>30</renewalIntervalInSecs><durationInSecs>90</durationInSecs></leaseInfo>
  <metadata class="java.util.Collections$EmptyMap">
    <apiml.routes.api__v1.gatewayUrl>api/v1</apiml.routes.api__v1.gatewayUrl>
    <apiml.routes.api__v1.serviceUrl>/discoverableclient/api/v1</apiml.routes.api__v1.serviceUrl>
    <apiml.service.title>Service &amp; &#x44;emo &lt;1&gt;</apiml.service.title>
  </metadata>
  <homePageUrl>https://localhost:10012/discoverableclient</homePageUrl>
  <healthCheckUrl>https://localhost:10012/discoverableclient/application/health</healthCheckUrl>
  <vipAddress>discoverableclient</vipAddress>
  <secureVipAddress>discoverableclient</secureVipAddress>
</instance>"#;

    #[test]
    fn a_java_client_registration_reads_like_its_json() {
        let (root, v) = parse(JAVA_REGISTRATION).unwrap();
        assert_eq!(root, "instance");
        assert_eq!(v["securePort"], json!({"$": "10012", "@enabled": "true"}));
        assert_eq!(v["metadata"]["apiml.service.title"], "Service & Demo <1>");
        let i = Instance::from_registration("discoverableclient", &v).unwrap();
        assert_eq!(i.base_url(), "https://localhost:10012");
        assert_eq!(i.metadata.len(), 3, "the map's class attribute is not metadata: {:?}", i.metadata);
        assert_eq!(i.metadata["apiml.routes.api_v1.gatewayUrl"], "api/v1");
        // Rendered and read again: the same instance.
        let xml = render("instance", &i.to_eureka(Status::Up, None, Times::default(), "ADDED"));
        let (_, again) = parse(&xml).unwrap();
        assert_eq!(Instance::from_registration("discoverableclient", &again).unwrap(), i);
    }

    #[test]
    fn repeated_elements_are_arrays_and_rendering_repeats_them() {
        let (_, v) =
            parse("<applications><application><name>A</name></application><application><name>B</name></application></applications>")
                .unwrap();
        assert_eq!(v["application"], json!([{"name": "A"}, {"name": "B"}]));
        assert_eq!(
            render("applications", &v),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><applications><application><name>A</name></application><application><name>B</name></application></applications>"
        );
    }

    #[test]
    fn hostile_or_broken_documents_are_refused() {
        let deep = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
        for doc in [
            "",
            "just text",
            "<instance>",
            "<instance></other>",
            "<a/><b/>",
            "<!DOCTYPE x [<!ENTITY e \"boom\">]><instance>&e;</instance>",
            "<instance>&e;</instance>",
            "<instance>&#xD800;</instance>",
            deep.as_str(),
        ] {
            assert!(matches!(parse(doc), Err(DiscoveryError::BadBody(_))), "{doc:?} was accepted");
        }
    }
}
