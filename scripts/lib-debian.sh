# Sourced by the scripts that debootstrap a Debian root (build-base-images.sh,
# fresh-debian-check.sh): where the host's own Debian mirror is.

host_mirror() {
  # deb822 sources first (URIs: line of a Debian archive), then the one-line format.
  local uri
  uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hsE '^deb +(\[[^]]*\] +)?https?://[^ ]+/debian/? ' /etc/apt/sources.list \
      /etc/apt/sources.list.d/*.list 2>/dev/null | sed -E 's/^deb +(\[[^]]*\] +)?//' |
      awk '{print $1}' | head -n1 || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}
