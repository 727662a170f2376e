# regcache, the mirror, as a Nomad service job: the container image on the
# docker driver, on its own host (a node class of its own, not a CI
# client), the cache on a host volume, the Docker Hub account from Nomad
# Variables, health from the admin listener's /readyz.
#
# Before the first run (docs/rollout.md, "Nomad"):
#   1. On the host that keeps the cache, in the Nomad client's configuration:
#        client {
#          node_class = "regcache-mirror"
#          host_volume "regcache-cache" { path = "/srv/regcache" read_only = false }
#        }
#      and `sudo install -d -o 65532 -g 65532 /srv/regcache` (the image's user).
#   2. The account, where only this job can read it:
#        nomad var put nomad/jobs/regcache username=myhubuser token=dckr_pat_... admin_token=$(openssl rand -hex 32)
#   3. The image where that host pulls from: `make image` builds
#      regcache:1.0.0; push it to your registry (-var image=registry.example.com/regcache:1.0.0)
#      or `docker save regcache:1.0.0 | ssh mirror-host docker load`.
#   4. nomad job run -var allow=10.0.0.0/8 deploy/nomad/regcache.nomad.hcl

variable "datacenters" {
  type        = list(string)
  default     = ["*"]
  description = "the datacenters to run in; \"*\" is every one (the node class and the host volume choose the host)"
}

variable "node_class" {
  type        = string
  default     = "regcache-mirror"
  description = "the node class of the mirror's host (client { node_class = ... }): not a CI client"
}

variable "image" {
  type        = string
  default     = "regcache:1.0.0"
  description = "the image `make image` built (regcache:<the chart's appVersion>), pushed or loaded where the mirror's host pulls from"
}

variable "upstream_url" {
  type    = string
  default = "https://registry-1.docker.io"
}

variable "allow" {
  type        = string
  default     = "10.0.0.0/8"
  description = "client networks allowed to pull (CIDRs, comma-separated); keep the firewall too"
}

variable "port" {
  type        = number
  default     = 5000
  description = "the registry port on the node, the one the clients' --mirror names"
}

job "regcache" {
  type        = "service"
  datacenters = var.datacenters

  # Its own host: CI jobs' disk and network load stay off the mirror, and
  # the cache's host volume is declared there only.
  constraint {
    attribute = "${node.class}"
    value     = var.node_class
  }

  group "mirror" {
    # One mirror with its cache on one node's disk: the host volume pins it there.
    count = 1

    volume "cache" {
      type      = "host"
      source    = "regcache-cache"
      read_only = false
    }

    network {
      port "registry" {
        static = var.port
        to     = 5000
      }
      # The dashboard, /metrics, /status and /readyz. A dynamic port for
      # Nomad's health check; state-changing admin calls need the token.
      port "admin" {
        to = 5001
      }
    }

    service {
      name     = "regcache"
      provider = "nomad"
      port     = "registry"

      check {
        name     = "ready"
        type     = "http"
        port     = "admin"
        path     = "/readyz"
        interval = "10s"
        timeout  = "3s"
      }
    }

    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "delay"
    }

    task "regcache" {
      driver = "docker"

      # SIGTERM drains: responses in flight finish (up to 30 s).
      kill_signal  = "SIGTERM"
      kill_timeout = "45s"

      config {
        image = var.image
        ports = ["registry", "admin"]
      }

      volume_mount {
        volume      = "cache"
        destination = "/var/lib/registry"
      }

      env {
        REGISTRY_PROXY_REMOTEURL = var.upstream_url
        REGCACHE_ALLOW           = var.allow
        REGCACHE_MAX_SIZE        = "80%"
        # Read at each login, so a new token in the variable needs no restart.
        REGCACHE_PASSWORD_FILE = "${NOMAD_SECRETS_DIR}/hub-token"
      }

      # The account from Nomad Variables (nomad/jobs/regcache). With Vault
      # instead, add `vault {}` to the task and read
      # {{ with secret "kv/data/regcache" }}{{ .Data.data.token }}{{ end }}.
      template {
        destination = "secrets/hub.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/regcache" }}
          REGISTRY_PROXY_USERNAME={{ .username }}
          REGCACHE_ADMIN_TOKEN={{ .admin_token }}
          {{- end }}
          EOT
      }

      template {
        destination = "secrets/hub-token"
        change_mode = "noop"
        uid         = 65532
        gid         = 65532
        perms       = "0400"
        data        = "{{ with nomadVar \"nomad/jobs/regcache\" }}{{ .token }}{{ end }}"
      }

      resources {
        cpu    = 1000
        memory = 512
      }
    }
  }
}
