#!/usr/bin/env bash
# Builds the Debian package (`make deb`) with dpkg-deb alone: no cargo-deb to
# install, and the same tool the test (tests/packaging.rs) reads it back with.
#
#   MYSQK_BIN  a mysqk binary to package (default: build the release profile);
#              the test passes its debug build so it need not build a release
#   DEB_OUT    output directory (default: target/debian)
#   DEB_COMPRESS  xz (default), gzip or none: the test's quick build uses gzip
#
# The package holds: /usr/bin/mysqk, man pages and bash/zsh/fish completions
# generated from the clap definitions (`mysqk gen-assets`), the systemd unit,
# README, LICENSE (as copyright), mysqk.ini.example and the cron example under
# /usr/share/doc/mysqk, and an empty /etc/mysqk (root:mysqk 0750, set by
# postinst, which also creates the mysqk system user). It prints the .deb path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO=${CARGO:-cargo}
out=${DEB_OUT:-target/debian}
if [ -z "${MYSQK_BIN:-}" ]; then
    "$CARGO" build --release --locked --bin mysqk >&2
    MYSQK_BIN=target/release/mysqk
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
[ -n "$version" ] || { echo "deb: no version in Cargo.toml" >&2; exit 1; }

mkdir -p "$out"
stage=$(mktemp -d "$out/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
doc=$root/usr/share/doc/mysqk

install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/man/man1" \
    "$root/usr/share/bash-completion/completions" \
    "$root/usr/share/zsh/vendor-completions" \
    "$root/usr/share/fish/vendor_completions.d" \
    "$root/usr/lib/systemd/system" "$doc"
install -d -m 0750 "$root/etc/mysqk"

install -m 0755 "$MYSQK_BIN" "$root/usr/bin/mysqk"
# Debug symbols do not belong in the package (and make a debug build huge).
if command -v strip >/dev/null; then strip --strip-unneeded "$root/usr/bin/mysqk"; fi

"$root/usr/bin/mysqk" gen-assets --out "$stage/assets" >/dev/null
for page in "$stage"/assets/man/*.1; do
    gzip -9n <"$page" >"$root/usr/share/man/man1/$(basename "$page").gz"
done
install -m 0644 "$stage/assets/completions/mysqk.bash" "$root/usr/share/bash-completion/completions/mysqk"
install -m 0644 "$stage/assets/completions/_mysqk" "$root/usr/share/zsh/vendor-completions/_mysqk"
install -m 0644 "$stage/assets/completions/mysqk.fish" "$root/usr/share/fish/vendor_completions.d/mysqk.fish"

install -m 0644 examples/mysqk.service "$root/usr/lib/systemd/system/mysqk.service"
install -m 0644 README.md mysqk.ini.example examples/mysqk.cron "$doc/"
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: mysqk"
    echo
    echo "Files: *"
    echo "License: MIT"
    sed 's/^$/./; s/^/ /' LICENSE
} >"$doc/copyright"

# Depends from the binary's shared libraries; dpkg-shlibdeps wants a
# debian/control in its working directory, which this package has no use for.
depends=libc6
if command -v dpkg-shlibdeps >/dev/null; then
    mkdir -p "$stage/shlibs/debian" && touch "$stage/shlibs/debian/control"
    found=$(cd "$stage/shlibs" && dpkg-shlibdeps -O "$root/usr/bin/mysqk" 2>/dev/null |
        sed -n 's/^shlibs:Depends=//p')
    [ -n "$found" ] && depends=$found
fi
depends="$depends, passwd"

cat >"$root/DEBIAN/control" <<EOF
Package: mysqk
Version: $version
Architecture: $arch
Maintainer: mysqk maintainers <root@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Section: admin
Priority: optional
Description: kill abnormal MySQL/MariaDB threads through held sessions
 mysqk kills runaway queries, idle sleepers and lock blockers on MySQL and
 MariaDB. It logs in before the incident and kills each thread through its
 owner's own session, so it works without SUPER and while new logins fail
 with "Too many connections". One-shot (cron) or as a daemon (mysqk.service).
EOF

cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if ! getent passwd mysqk >/dev/null; then
        useradd --system --user-group --home-dir /var/lib/mysqk \
            --shell /usr/sbin/nologin --comment "mysqk daemon" mysqk
    fi
    # The ini holds passwords: readable by the daemon's group, nobody else.
    chgrp mysqk /etc/mysqk
    chmod 0750 /etc/mysqk
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop mysqk.service || true
fi
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

deb=$out/mysqk_${version}_${arch}.deb
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
