//! Binaries and archives inside layers: a Go program built here (compared with
//! `go version -m`), an oversized Go binary that must be stream-searched, a
//! cargo-auditable binary and a war with a nested jar.

use std::io::{Cursor, Read, Write};
use std::process::Command;

use super::{layer_tar, Member};
use crate::catalog::{elf::build_test_elf, golang::build_inline_blob, java::build_zip, FileKind};
use crate::inventory;
use crate::layer::{analyze_layer, Outcome, MAX_BINARY_BYTES};

fn write(dir: &std::path::Path, rel: &str, body: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

#[test]
fn go_binary_matches_go_version_m() {
    if !Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        super::skip("no Go toolchain (apt-get install golang-go)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // A vendored dependency and a versioned replacement, so the build needs no network.
    write(d, "go.mod", "module example.com/app\n\ngo 1.18\n\nrequire (\n\texample.com/dep v1.2.3\n\texample.com/old v1.0.0\n)\n\nreplace example.com/old v1.0.0 => example.com/new v1.1.0\n");
    write(d, "main.go", "package main\n\nimport (\n\t\"example.com/dep\"\n\t\"example.com/old\"\n)\n\nfunc main() { println(dep.X + old.Y) }\n");
    write(d, "vendor/modules.txt", "# example.com/dep v1.2.3\n## explicit\nexample.com/dep\n# example.com/old v1.0.0 => example.com/new v1.1.0\n## explicit\nexample.com/old\n");
    write(
        d,
        "vendor/example.com/dep/dep.go",
        "package dep\n\nconst X = 1\n",
    );
    write(
        d,
        "vendor/example.com/old/old.go",
        "package old\n\nconst Y = 2\n",
    );
    let env = [
        ("GOFLAGS", "-mod=vendor"),
        ("GOPROXY", "off"),
        ("CGO_ENABLED", "0"),
        ("GOTOOLCHAIN", "local"),
    ];
    let status = Command::new("go")
        .args(["build", "-o", "app", "."])
        .current_dir(d)
        .envs(env)
        .env("GOCACHE", d.join("cache"))
        .env("GOPATH", d.join("gopath"))
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("go")
        .args(["version", "-m", "app"])
        .current_dir(d)
        .envs(env)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    // Reference list from Go's own reader: stdlib, then mod/dep lines, `=>` replacing the line before.
    let mut expected: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.trim_start().split('\t').collect();
        match f.as_slice() {
            [first, ..] if first.starts_with("app: go") => {
                expected.push(("stdlib".into(), first["app: go".len()..].to_string()))
            }
            ["mod" | "dep", path, version, ..] => {
                expected.push((path.to_string(), version.to_string()))
            }
            ["=>", path, version, ..] if !version.is_empty() => {
                expected.pop();
                expected.push((path.to_string(), version.to_string()));
            }
            _ => {}
        }
    }
    assert!(
        expected
            .iter()
            .any(|(p, v)| p == "example.com/new" && v == "v1.1.0"),
        "{text}"
    );
    let bin = std::fs::read(d.join("app")).unwrap();
    let analysis =
        analyze_layer(&layer_tar(&[Member::Exec("usr/local/bin/app", &bin)])[..]).unwrap();
    let inv = inventory::merge([&analysis]);
    let got: Vec<(String, String)> = inv
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    assert_eq!(got, expected);
    eprintln!(
        "go binary: {} modules, same as go version -m ({})",
        got.len(),
        expected[0].1
    );
}

#[test]
fn oversized_go_binary_is_stream_searched() {
    let modinfo = "path\texample.com/big\nmod\texample.com/big\tv1.0.0\t\ndep\tgithub.com/x/y\tv0.1.0\th1:z=\n";
    let blob = build_inline_blob("go1.22.1", modinfo);
    // A decoy magic (as in the Go toolchain's own string tables) comes before the real blob.
    let mut tail = b"\xff Go buildinf:\x99\x99 not a header".to_vec();
    tail.extend_from_slice(&blob);
    let size = MAX_BINARY_BYTES + (3 << 20);
    let zeros_before = MAX_BINARY_BYTES + (1 << 20) - 4 + 7; // puts the magic across a read boundary
    let zeros_after = size - 4 - zeros_before - tail.len() as u64;
    let content = Cursor::new(b"\x7fELF".to_vec())
        .chain(std::io::repeat(0).take(zeros_before))
        .chain(Cursor::new(tail))
        .chain(std::io::repeat(0).take(zeros_after));
    let mut h = tar::Header::new_gnu();
    h.set_path("opt/big/bin/big").unwrap();
    h.set_size(size);
    h.set_mode(0o755);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let pad = (512 - size % 512) % 512;
    let stream = Cursor::new(h.as_bytes().to_vec())
        .chain(content)
        .chain(std::io::repeat(0).take(pad + 1024));
    let analysis = analyze_layer(stream).unwrap();
    assert_eq!(analysis.files.len(), 1, "{:?}", analysis.notes);
    let Outcome::Packages(pkgs) = &analysis.files[0].outcome else {
        panic!("{:?}", analysis.files[0].outcome)
    };
    let names: Vec<&str> = pkgs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["stdlib", "example.com/big", "github.com/x/y"]);
    assert_eq!(pkgs[0].version, "1.22.1");
}

#[test]
fn auditable_rust_binary_and_war_in_a_layer() {
    let json = br#"{"packages":[{"name":"app","version":"0.1.0","source":"local","root":true},{"name":"smallvec","version":"1.11.0","source":"crates.io"}]}"#;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(json).unwrap();
    let elf = build_test_elf(
        0x1000,
        &[(".text", &[0x90; 256]), (".dep-v0", &z.finish().unwrap())],
    );
    let inner = build_zip(&[(
        "META-INF/maven/org.apache.commons/commons-text/pom.properties",
        b"groupId=org.apache.commons\nartifactId=commons-text\nversion=1.9\n",
    )]);
    let war = build_zip(&[
        ("WEB-INF/lib/commons-text-1.9.jar", &inner),
        ("index.html", b"<html/>"),
    ]);
    let members = [
        Member::Exec("usr/bin/app", &elf),
        Member::Exec(
            "usr/bin/script",
            b"#!/bin/sh\necho this executable is no ELF file at all\n",
        ),
        Member::File("srv/app.war", &war),
        Member::File("srv/broken.jar", b"PK\x03\x04 not really"),
    ];
    let analysis = analyze_layer(&layer_tar(&members)[..]).unwrap();
    assert_eq!(analysis.shadows, vec!["/usr/bin/script".to_string()]);
    let inv = inventory::merge([&analysis]);
    let purls: Vec<&str> = inv.packages.iter().map(|p| p.purl.as_str()).collect();
    assert_eq!(
        purls,
        [
            "pkg:maven/org.apache.commons/commons-text@1.9",
            "pkg:cargo/smallvec@1.11.0"
        ]
    );
    assert_eq!(
        inv.packages[0].path,
        "/srv/app.war!/WEB-INF/lib/commons-text-1.9.jar"
    );
    assert_eq!(inv.problems.len(), 1);
    assert!(analysis.files.iter().any(|f| f.kind == FileKind::Binary));
}
