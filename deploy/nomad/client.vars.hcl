# The variables of client-enable.nomad.hcl and client-disable.nomad.hcl, for
# `nomad job run -var-file=deploy/nomad/client.vars.hcl ...` (copy it and
# put your values in). docs/rollout.md, "The clients".

# The mirror's URL as the nodes reach it.
mirror = "http://192.0.2.1:5000"

# The regcache binary the nodes download (`make build VERSION=1.0.0` builds
# bin/regcache; serve it over HTTPS, e.g. from a bucket), and its checksum:
#   echo "sha256:$(sha256sum bin/regcache | cut -d' ' -f1)"
# A wrong or unedited checksum fails the download on every node; nothing runs.
regcache_url      = "https://artifacts.example.com/regcache/1.0.0/regcache-linux-amd64"
regcache_checksum = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

# The namespace allowed raw_exec (docs/rollout.md, "Keeping raw_exec narrow");
# "default" where raw_exec is enabled for every namespace.
namespace = "regcache-ops"
