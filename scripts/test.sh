#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (Debian packages with apt-get, Python packages with pip), then runs every
# test of the workspace. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the build and the tests use for real:
#   git                 real repositories, `git daemon`, `git http-backend`
#   pkg-config libssl-dev  libgit2's HTTPS transport
#   prometheus          a real Prometheus (and promtool) for the rules provider,
#                       the shipped alert rules and the serve end-to-end test
#   prometheus-alertmanager  a real Alertmanager (and amtool) for serve's alerts
#   chromium            a real headless browser for serve's status page
#   openssh-server      a real sshd for the Git source over ssh
#   openssl             RSA keys for the GitHub App tests
apt_packages=(git pkg-config libssl-dev prometheus prometheus-alertmanager chromium openssh-server openssl)

missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python packages:
#   moto[server]        a real S3-compatible server for the history store's tests
if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing Python packages: moto[server]"
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
  hash -r
fi

# Tests make commits in temporary repositories: give git an identity where
# the machine has none, without touching a user's own settings.
export GIT_AUTHOR_NAME="${GIT_AUTHOR_NAME:-plumb tests}" GIT_AUTHOR_EMAIL="${GIT_AUTHOR_EMAIL:-tests@plumb.invalid}"
export GIT_COMMITTER_NAME="${GIT_COMMITTER_NAME:-plumb tests}" GIT_COMMITTER_EMAIL="${GIT_COMMITTER_EMAIL:-tests@plumb.invalid}"

# One TLS crypto provider: aws-lc-rs next to ring would make the first TLS
# client panic unless plumb installs one (it does), and costs a C build.
if cargo tree --workspace --locked -i aws-lc-sys 2>/dev/null | grep -q aws-lc-sys; then
  echo "aws-lc-sys is in the dependency tree; plumb uses rustls with ring only:" >&2
  cargo tree --workspace -i aws-lc-sys >&2
  exit 1
fi

cargo test --workspace --locked "$@"
