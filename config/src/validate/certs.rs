//! Which PEM files a process uses: the configured ones (checked readable), or the
//! development set `plexgate init certificate` writes into the workspace.

use std::path::{Path, PathBuf};

use crate::checked::Certificates;
use crate::model::Certificate;

use super::{Ctx, string_list};

/// Sub-directory of the workspace holding the generated development certificates.
pub const GENERATED_DIR: &str = "certificates";

/// The generated development certificates under `workspace`.
pub fn generated(workspace: &Path) -> Certificates {
    let dir = workspace.join(GENERATED_DIR);
    Certificates {
        key: dir.join("server.key"),
        certificate: dir.join("server.pem"),
        certificate_authorities: vec![dir.join("ca.pem")],
        client_key: dir.join("client.key"),
        client_certificate: dir.join("client.pem"),
        generated: true,
    }
}

/// Resolves `component` (a `components.<c>.certificate`, field by field) over `zowe`.
pub(crate) fn resolve(
    ctx: &mut Ctx<'_>,
    path: &str,
    zowe: &Certificate,
    component: Option<&Certificate>,
    workspace: &Path,
) -> Certificates {
    // Each field: the component's value if set, else zowe.certificate's, with the path it came from.
    let pick = |f: fn(&Certificate) -> Option<&String>| -> Option<(String, &'static str)> {
        component.and_then(|c| f(c).map(|v| (v.clone(), "component"))).or_else(|| f(zowe).map(|v| (v.clone(), "zowe")))
    };
    let at =
        |origin: &str, field: &str| if origin == "component" { format!("{path}.{field}") } else { format!("zowe.certificate.{field}") };
    let key = pick(|c| c.pem.key.as_ref());
    let cert = pick(|c| c.pem.certificate.as_ref());
    let cas = component
        .and_then(|c| c.pem.certificate_authorities.as_ref().map(|v| (v.clone(), "component")))
        .or_else(|| zowe.pem.certificate_authorities.clone().map(|v| (v, "zowe")));
    let keystore = pick(|c| c.keystore.file.as_ref());
    let keystore_type = pick(|c| c.keystore.kind.as_ref());

    match (key, cert) {
        (Some((k, ko)), Some((c, co))) => {
            let ca_list = match cas {
                Some((v, o)) => match string_list(&v) {
                    Some(list) if !list.is_empty() => list.into_iter().map(|p| (p, o)).collect(),
                    Some(_) => {
                        ctx.problem(
                            &at(o, "pem.certificateAuthorities"),
                            "found an empty list, allowed one or more PEM files of CA certificates",
                        );
                        Vec::new()
                    }
                    None => {
                        ctx.problem(
                            &at(o, "pem.certificateAuthorities"),
                            "found a value that is neither a file name, a comma-separated string of them, nor a list of them",
                        );
                        Vec::new()
                    }
                },
                None => {
                    ctx.problem(
                        &at(ko, "pem.certificateAuthorities"),
                        "missing; with pem.key and pem.certificate set, the CA certificates to trust are needed too",
                    );
                    Vec::new()
                }
            };
            let key = readable(ctx, &at(ko, "pem.key"), &k);
            let certificate = readable(ctx, &at(co, "pem.certificate"), &c);
            let certificate_authorities: Vec<PathBuf> =
                ca_list.iter().map(|(p, o)| readable(ctx, &at(o, "pem.certificateAuthorities"), p)).collect();
            let client_key =
                pick(|c| c.pem.client_key.as_ref()).map(|(p, o)| readable(ctx, &at(o, "pem.clientKey"), &p)).unwrap_or_else(|| key.clone());
            let client_certificate = pick(|c| c.pem.client_certificate.as_ref())
                .map(|(p, o)| readable(ctx, &at(o, "pem.clientCertificate"), &p))
                .unwrap_or_else(|| certificate.clone());
            Certificates { key, certificate, certificate_authorities, client_key, client_certificate, generated: false }
        }
        (Some((_, o)), None) => {
            ctx.problem(&at(o, "pem.certificate"), "missing; pem.key is set, so pem.certificate (the matching certificate) is needed too");
            generated(workspace)
        }
        (None, Some((_, o))) => {
            ctx.problem(&at(o, "pem.key"), "missing; pem.certificate is set, so pem.key (its private key) is needed too");
            generated(workspace)
        }
        (None, None) => {
            if let Some((file, o)) = keystore {
                let kind = keystore_type.map(|(t, _)| t).unwrap_or_else(|| "PKCS12".to_owned());
                ctx.problem(
                    &at(o, "keystore.file"),
                    format!("found a {kind} keystore ({file}); plexgate reads PEM files: set zowe.certificate.pem.key, pem.certificate and pem.certificateAuthorities (Zowe's `zwe init certificate` writes them beside the keystore)"),
                );
            }
            generated(workspace)
        }
    }
}

/// Checks that a configured PEM file can be read and holds PEM data; returns its absolute path.
fn readable(ctx: &mut Ctx<'_>, path: &str, file: &str) -> PathBuf {
    let abs = ctx.path(file);
    match std::fs::read(&abs) {
        Ok(bytes) if bytes.windows(11).any(|w| w == b"-----BEGIN ") => {}
        Ok(_) => ctx.problem(path, format!("{} is not a PEM file (no -----BEGIN line)", abs.display())),
        Err(e) => ctx.problem(path, format!("cannot read {}: {e}", abs.display())),
    }
    abs
}
