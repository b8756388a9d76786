//! Test certificates made with the `openssl` command: a CA and leaves signed by it, EC P-256,
//! valid two days, for mutual TLS between runtimes, brokers and clients in tests.

use std::path::Path;
use std::process::{Command, Stdio};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`<name>-ca.crt`) and a certificate signed by it for each `(file stem, CN, SAN)`.
pub fn make_pki(dir: &Path, name: &str, leaves: &[(&str, &str, Option<&str>)]) {
    let ca_key = format!("{name}-ca.key");
    let ca_crt = format!("{name}-ca.crt");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend(["-keyout", &ca_key, "-out", &ca_crt, "-days", "2"]);
    let subj = format!("/CN={name} test CA");
    args.extend(["-subj", &subj]);
    openssl(dir, &args);
    for (stem, cn, san) in leaves {
        let key = format!("{stem}.key");
        let csr = format!("{stem}.csr");
        let crt = format!("{stem}.crt");
        let ext = format!("{stem}.ext");
        std::fs::write(
            dir.join(&ext),
            match san {
                Some(san) => format!("subjectAltName={san}\n"),
                None => "basicConstraints=CA:FALSE\n".to_string(),
            },
        )
        .expect("write ext");
        let subj = format!("/CN={cn}");
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &args);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}
