//! Man pages and shell completions, generated from the clap definitions by
//! the hidden `mysqk gen-assets --out DIR` (what `make deb` packages), so
//! they can never drift from `--help`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Where the packaged files live, for the FILES section of `mysqk(1)`; the
/// same paths as the .deb and examples/mysqk.service.
const FILES: &str = r#".SH FILES
.TP
\fI/etc/mysqk/mysqk.ini\fR
the config file of the packaged \fBmysqk.service\fR (\fBmysqk watch \-c /etc/mysqk/mysqk.ini\fR); mode 0640, owner root, group mysqk: it holds passwords
.TP
\fI/etc/mysqk/env\fR
optional; \fBMYSQK_KEY=\fR\fIhex\fR for the \fBenc:v1:\fR passwords, read by the unit
.TP
\fI/usr/share/doc/mysqk/mysqk.ini.example\fR
every key, commented; safe to copy: \fBcp /usr/share/doc/mysqk/mysqk.ini.example /etc/mysqk/mysqk.ini\fR
.TP
\fI/var/lib/mysqk/snapshots\fR
one snapshot file per event (\fBsnapshot_dir\fR)
.SH SEE ALSO
\fI/usr/share/doc/mysqk/README.md\fR, \fBpt\-kill\fR(1)
"#;

/// Writes `DIR/man/mysqk.1`, one `mysqk-<command>.1` per command, and
/// `DIR/completions/{mysqk.bash,_mysqk,mysqk.fish}`. Returns the files written.
pub fn write(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let man_dir = dir.join("man");
    let comp_dir = dir.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&comp_dir)?;
    let mut written = Vec::new();

    // build() gives each subcommand its page name (`mysqk-kill`).
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = clap_mangen::Man::new(sub.clone()).manual("mysqk");
        written.push(man.generate_to(&man_dir)?);
    }
    let top = clap_mangen::Man::new(cmd.clone()).manual("mysqk");
    let path = man_dir.join(top.get_filename());
    let mut f = std::fs::File::create(&path)?;
    top.render(&mut f)?;
    f.write_all(FILES.as_bytes())?;
    f.flush()?;
    written.push(path);

    for (shell, name) in [
        (Shell::Bash, "mysqk.bash"),
        (Shell::Zsh, "_mysqk"),
        (Shell::Fish, "mysqk.fish"),
    ] {
        let path = comp_dir.join(name);
        let mut f = std::fs::File::create(&path)?;
        clap_complete::generate(shell, &mut public_command(), "mysqk", &mut f);
        f.flush()?;
        written.push(path);
    }
    Ok(written)
}

/// The command line without its hidden commands: the zsh generator lists
/// hidden ones too, and `gen-assets` is not for users.
fn public_command() -> clap::Command {
    let cmd = Cli::command();
    let public: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut out = clap::Command::new("mysqk")
        .version(env!("CARGO_PKG_VERSION"))
        .args(cmd.get_arguments().cloned())
        .subcommands(public);
    if let Some(a) = cmd.get_about() {
        out = out.about(a.clone());
    }
    out
}
