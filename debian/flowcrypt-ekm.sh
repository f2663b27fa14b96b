#!/bin/sh
# The EKM command line, run with the Node.js runtime bundled in this package.
#
# Run as root, it switches to the flowcrypt-ekm user first: the encrypted database (and the journal
# files SQLite creates next to it) must stay owned by the service user, or the service could no
# longer open what a command run by root created.
set -e
node=/usr/lib/flowcrypt-ekm/bin/node
main=/usr/lib/flowcrypt-ekm/build/src/main.js
if [ "$(id -u)" -eq 0 ]; then
  # Audit entries of --delete, --export, --import name who ran it (invokedBy) beside the service user.
  FLOWCRYPT_EKM_INVOKED_BY="${SUDO_USER:-root}"
  export FLOWCRYPT_EKM_INVOKED_BY
  exec setpriv --reuid=flowcrypt-ekm --regid=flowcrypt-ekm --init-groups -- "$node" "$main" "$@"
fi
exec "$node" "$main" "$@"
