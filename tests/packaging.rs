//! `make deb`: the package holds what a DBA installing it expects, and the
//! pieces point at each other (the unit at the binary, man page and README it
//! names; the example ini is safe to copy as is). Built once, from the debug
//! binary cargo has already built for the tests, so no release build runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn build_deb(out: &Path) -> PathBuf {
    let stdout = run(Command::new("make")
        .args(["-s", "deb"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("MYSQK_BIN", env!("CARGO_BIN_EXE_mysqk"))
        .env("DEB_OUT", out)
        .env("DEB_COMPRESS", "gzip"));
    let deb = PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("make deb prints the .deb path"),
    );
    assert!(deb.is_file(), "{} missing", deb.display());
    assert_eq!(
        deb.file_name().unwrap().to_string_lossy(),
        format!(
            "mysqk_{}_{}.deb",
            env!("CARGO_PKG_VERSION"),
            run(Command::new("dpkg").arg("--print-architecture")).trim()
        )
    );
    deb
}

/// `dpkg-deb -c` as (mode, owner, path without the leading `.`).
fn contents(deb: &Path) -> Vec<(String, String, String)> {
    run(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 6, "unexpected dpkg-deb -c line: {l}");
            let path = f[5].trim_start_matches('.').trim_end_matches('/');
            (f[0].to_string(), f[1].to_string(), path.to_string())
        })
        .filter(|(_, _, p)| !p.is_empty())
        .collect()
}

fn gunzip(path: &Path) -> String {
    run(Command::new("gzip").arg("-dc").arg(path))
}

#[test]
fn deb_holds_binary_docs_unit_and_empty_etc() {
    let tmp = tempfile::tempdir().unwrap();
    let deb = build_deb(&tmp.path().join("out"));

    // The exact file list: a file dropped or misplaced fails here.
    let list = contents(&deb);
    let files: BTreeSet<String> = list
        .iter()
        .filter(|(mode, _, _)| !mode.starts_with('d'))
        .map(|(_, _, p)| p.clone())
        .collect();
    let commands: Vec<String> = mysqk::cli::Cli::command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_string())
        .collect();
    assert!(commands.iter().any(|c| c == "watch"), "{commands:?}");
    let mut expected: BTreeSet<String> = [
        "/usr/bin/mysqk",
        "/usr/lib/systemd/system/mysqk.service",
        "/usr/share/bash-completion/completions/mysqk",
        "/usr/share/zsh/vendor-completions/_mysqk",
        "/usr/share/fish/vendor_completions.d/mysqk.fish",
        "/usr/share/doc/mysqk/README.md",
        "/usr/share/doc/mysqk/copyright",
        "/usr/share/doc/mysqk/mysqk.ini.example",
        "/usr/share/doc/mysqk/mysqk.cron",
        "/usr/share/man/man1/mysqk.1.gz",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for c in &commands {
        expected.insert(format!("/usr/share/man/man1/mysqk-{c}.1.gz"));
    }
    assert_eq!(files, expected);
    assert!(
        list.iter().all(|(_, owner, _)| owner == "root/root"),
        "{list:?}"
    );
    let mode = |p: &str| {
        list.iter()
            .find(|(_, _, q)| q == p)
            .map(|(m, _, _)| m.as_str())
            .unwrap_or_else(|| panic!("{p} not in the package"))
    };
    // An empty /etc/mysqk, closed to others (postinst gives it the mysqk group).
    assert_eq!(mode("/etc/mysqk"), "drwxr-x---");
    assert!(!list.iter().any(|(_, _, p)| p.starts_with("/etc/mysqk/")));
    assert_eq!(mode("/usr/bin/mysqk"), "-rwxr-xr-x");
    assert_eq!(mode("/usr/share/doc/mysqk/mysqk.ini.example"), "-rw-r--r--");

    let fields = run(Command::new("dpkg-deb")
        .arg("-f")
        .arg(&deb)
        .args(["Package", "Version", "Depends"]));
    assert!(fields.contains("Package: mysqk\n"), "{fields}");
    assert!(
        fields.contains(&format!("Version: {}\n", env!("CARGO_PKG_VERSION"))),
        "{fields}"
    );
    assert!(
        fields.contains("libc6") && fields.contains("passwd"),
        "{fields}"
    );
    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(info.contains("postinst"), "{info}");

    let root = tmp.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let at = |p: &str| root.join(p.trim_start_matches('/'));

    // The packaged binary is the one built, stripped, and runs.
    let version = run(Command::new(at("/usr/bin/mysqk")).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("mysqk {}", env!("CARGO_PKG_VERSION"))
    );

    // Man pages: generated from clap, one per command, the top one with FILES.
    let top = gunzip(&at("/usr/share/man/man1/mysqk.1.gz"));
    assert!(top.contains(".TH mysqk 1"), "{top}");
    assert!(top.contains(".SH FILES") && top.contains("/etc/mysqk/mysqk.ini"));
    for c in &commands {
        assert!(
            top.contains(&format!("mysqk\\-{}", c.replace('-', "\\-"))),
            "{c}"
        );
    }
    let kill = gunzip(&at("/usr/share/man/man1/mysqk-kill.1.gz"));
    assert!(kill.contains(".TH mysqk-kill 1") && kill.contains("\\-\\-dry\\-run"));

    let bash = std::fs::read_to_string(at("/usr/share/bash-completion/completions/mysqk")).unwrap();
    assert!(bash.contains("complete -F _mysqk") && bash.contains("--dry-run"));
    run(Command::new("bash")
        .arg("-n")
        .arg(at("/usr/share/bash-completion/completions/mysqk")));
    let zsh = std::fs::read_to_string(at("/usr/share/zsh/vendor-completions/_mysqk")).unwrap();
    assert!(
        zsh.starts_with("#compdef mysqk"),
        "{}",
        &zsh[..40.min(zsh.len())]
    );
    let fish =
        std::fs::read_to_string(at("/usr/share/fish/vendor_completions.d/mysqk.fish")).unwrap();
    assert!(fish.contains("complete -c mysqk") && fish.contains("watch"));
    for text in [&bash, &zsh, &fish, &top] {
        // The hidden asset generator is not offered to users.
        assert!(!text.contains("gen-assets") && !text.contains("gen\\-assets"));
    }

    // The unit runs the packaged binary on /etc/mysqk, and everything it
    // names for documentation is installed by the package.
    let unit = std::fs::read_to_string(at("/usr/lib/systemd/system/mysqk.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    assert_eq!(exec, "/usr/bin/mysqk watch -c /etc/mysqk/mysqk.ini");
    assert!(unit.contains("\nAssertPathExists=/etc/mysqk/mysqk.ini\n"));
    assert!(unit.contains("\nRestartPreventExitStatus=2\n"));
    let docs = unit
        .lines()
        .find_map(|l| l.strip_prefix("Documentation="))
        .expect("Documentation");
    for d in docs.split_whitespace() {
        let path = if let Some(page) = d.strip_prefix("man:") {
            let (name, section) = page.trim_end_matches(')').split_once('(').unwrap();
            format!("/usr/share/man/man{section}/{name}.{section}.gz")
        } else {
            d.strip_prefix("file://")
                .expect("man: or file:")
                .to_string()
        };
        assert!(
            files.contains(&path),
            "Documentation={d}: {path} not installed"
        );
    }

    let postinst = root.join("postinst");
    run(Command::new("dpkg-deb")
        .arg("--ctrl-tarfile")
        .arg(&deb)
        .stdout(std::fs::File::create(tmp.path().join("ctrl.tar")).unwrap()));
    run(Command::new("tar")
        .arg("-xf")
        .arg(tmp.path().join("ctrl.tar"))
        .arg("-C")
        .arg(&root)
        .arg("./postinst"));
    let script = std::fs::read_to_string(&postinst).unwrap();
    assert!(script.contains("useradd --system") && script.contains("chgrp mysqk /etc/mysqk"));
    run(Command::new("sh").arg("-n").arg(&postinst));

    let copyright = std::fs::read_to_string(at("/usr/share/doc/mysqk/copyright")).unwrap();
    assert!(copyright.contains("License: MIT") && copyright.contains(" MIT License"));

    // Safe to copy: once passwords are filled in it loads, mails nobody, has
    // no live k_include and kills nothing (dry run everywhere).
    let example = std::fs::read_to_string(at("/usr/share/doc/mysqk/mysqk.ini.example")).unwrap();
    for line in example.lines().map(str::trim_start) {
        assert!(
            !line.starts_with("k_include=") && !line.starts_with("mail_host="),
            "live example value: {line}"
        );
    }
    let copied = tmp.path().join("mysqk.ini");
    std::fs::write(&copied, example.replace("enc:v1:REPLACE_ME", "pw")).unwrap();
    let cfg = mysqk::config::Config::load(&copied).expect("the example loads");
    assert!(!cfg.mail.enabled());
    assert!(!cfg.instances.is_empty());
    for inst in &cfg.instances {
        assert!(inst.rules.include.is_none(), "{}", inst.dbid);
        assert!(inst.dry_run, "{} kills as shipped", inst.dbid);
    }
}
