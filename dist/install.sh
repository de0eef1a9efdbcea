#!/bin/sh
# install.sh, shipped in the spoolpost tarball: puts the programs, man
# pages, completions, units and example configuration in place, and prints
# each file it wrote. It creates no user and starts nothing; what to do
# next is printed at the end (and in doc/operations.md).
#
#   ./install.sh [--prefix DIR] [--sysconfdir DIR] [--no-system]
#   DESTDIR=/scratch ./install.sh --prefix /usr      # staged, as packagers do
#
# --prefix      where bin/ and share/ go (default /usr/local)
# --sysconfdir  where spoolpost.toml, logrotate.d/ go (default /etc)
# --no-system   only the programs, man pages and completions (cron-only
#               hosts, or an unprivileged user's prefix)
# An existing spoolpost.toml is never overwritten: the new example is
# written beside it as spoolpost.toml.new.
set -eu

prefix=/usr/local
sysconfdir=/etc
system=yes
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || { echo "install.sh: --prefix needs a folder" >&2; exit 2; }; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#--prefix=}; shift ;;
        --sysconfdir) [ $# -ge 2 ] || { echo "install.sh: --sysconfdir needs a folder" >&2; exit 2; }; sysconfdir=$2; shift 2 ;;
        --sysconfdir=*) sysconfdir=${1#--sysconfdir=}; shift ;;
        --no-system) system=no; shift ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be absolute: $prefix" >&2; exit 2 ;; esac
case "$sysconfdir" in /*) ;; *) echo "install.sh: --sysconfdir must be absolute: $sysconfdir" >&2; exit 2 ;; esac

here=$(cd "$(dirname "$0")" && pwd)
dest=${DESTDIR:-}

put() { # put MODE SOURCE TARGET (TARGET without DESTDIR)
    install -D -m "$1" "$2" "$dest$3"
    echo "installed $dest$3"
}

for p in collector sender reporter; do
    put 0755 "$here/bin/$p" "$prefix/bin/$p"
    put 0644 "$here/man/man1/$p.1.gz" "$prefix/share/man/man1/$p.1.gz"
    put 0644 "$here/completions/bash/$p" "$prefix/share/bash-completion/completions/$p"
    put 0644 "$here/completions/zsh/_$p" "$prefix/share/zsh/site-functions/_$p"
    put 0644 "$here/completions/fish/$p.fish" "$prefix/share/fish/vendor_completions.d/$p.fish"
done
put 0644 "$here/man/man5/spoolpost.toml.5.gz" "$prefix/share/man/man5/spoolpost.toml.5.gz"
put 0644 "$here/dist/cron/spoolpost" "$prefix/share/doc/spoolpost/examples/cron.d-spoolpost"
put 0644 "$here/spoolpost.toml" "$prefix/share/doc/spoolpost/examples/spoolpost.toml"
for doc in "$here"/doc/*; do
    put 0644 "$doc" "$prefix/share/doc/spoolpost/$(basename "$doc")"
done

if [ "$system" = yes ]; then
    # The units name /usr/bin/PROGRAM; point them at this prefix (escaped:
    # "&", "#" and "\" mean something to sed).
    sed_prefix=$(printf '%s' "$prefix" | sed 's/[#&\\]/\\&/g')
    for unit in "$here"/dist/systemd/*; do
        target=$sysconfdir/systemd/system/$(basename "$unit")
        install -d "$dest$sysconfdir/systemd/system"
        sed "s#/usr/bin/\(collector\|sender\|reporter\) #$sed_prefix/bin/\1 #g" "$unit" >"$dest$target"
        chmod 0644 "$dest$target"
        echo "installed $dest$target"
    done
    put 0644 "$here/dist/tmpfiles.d/spoolpost.conf" "$sysconfdir/tmpfiles.d/spoolpost.conf"
    put 0644 "$here/dist/logrotate.d/spoolpost" "$sysconfdir/logrotate.d/spoolpost"
    if [ -e "$dest$sysconfdir/spoolpost.toml" ]; then
        put 0640 "$here/spoolpost.toml" "$sysconfdir/spoolpost.toml.new"
        echo "kept $dest$sysconfdir/spoolpost.toml (the new example is beside it)"
    else
        put 0640 "$here/spoolpost.toml" "$sysconfdir/spoolpost.toml"
    fi
    # The sender unit's EnvironmentFile= (its secrets): never overwritten.
    if [ ! -e "$dest$sysconfdir/default/spoolpost" ]; then
        put 0600 "$here/dist/default/spoolpost" "$sysconfdir/default/spoolpost"
    fi
fi

cat <<NEXT
done. Next, as root (docs/operations.md, "Install"):
  useradd --system --home-dir /var/spool/spoolpost --shell /usr/sbin/nologin spoolpost
  chgrp spoolpost $sysconfdir/spoolpost.toml     # then edit it
  systemd-tmpfiles --create $sysconfdir/tmpfiles.d/spoolpost.conf
  systemctl daemon-reload && systemctl enable --now spoolpost.target spoolpost-sender@1
NEXT
