# Points every Nomad client node's dockerd at the mirror, and keeps it so:
# a periodic sysbatch job runs, on each eligible node, `regcache client
# docker enable` (edits /etc/docker/daemon.json in place and reloads
# dockerd with SIGHUP; running containers are not touched; a node already
# configured is a no-op), then `regcache client docker status`, which fails
# the node's allocation unless the mirror is in daemon.json, active in
# dockerd and answering. Each periodic run reaches the nodes present at
# that time, so autoscaled nodes are configured within one period (or at
# boot: docs/rollout.md, "Autoscaling groups").
#
#   nomad job run -var mirror=http://192.0.2.1:5000 \
#     -var regcache_url=https://artifacts.example.com/regcache/1.0.0/regcache-linux-amd64 \
#     -var regcache_checksum=sha256:<sha256sum of that file> deploy/nomad/client-enable.nomad.hcl
#   nomad job periodic force regcache-client-enable     # run now, not at the next period
#
# The binary comes from var.regcache_url, checked against var.regcache_checksum
# (Nomad's artifact block), so nothing needs to be on the nodes beforehand.
# The tasks use raw_exec (they edit the host's /etc/docker and signal its
# dockerd); docs/rollout.md, "Keeping raw_exec narrow", confines that driver
# to one namespace (-var namespace=regcache-ops). Roll-out and roll-back:
# docs/rollout.md.

variable "datacenters" {
  type        = list(string)
  default     = ["*"]
  description = "the datacenters to run in; \"*\" is every one, so a datacenter name that differs places nothing by mistake"
}

variable "namespace" {
  type        = string
  default     = "default"
  description = "the Nomad namespace; regcache-ops when raw_exec is allowed there only (docs/rollout.md)"
}

variable "mirror" {
  type        = string
  default     = "http://192.0.2.1:5000"
  description = "the mirror's URL as the nodes reach it"
}

variable "node_class" {
  type        = string
  default     = ".*"
  description = "a regular expression of the node classes to configure: '^canary$' first, then '.*'"
}

variable "regcache_url" {
  type        = string
  description = "where the nodes download the regcache binary (linux, the nodes' architecture): bin/regcache of `make build`, served over HTTPS"
}

variable "regcache_checksum" {
  type        = string
  description = "the binary's checksum as Nomad's artifact wants it: sha256:<hex> (sha256sum bin/regcache)"
}

variable "schedule" {
  type        = string
  default     = "*/30 * * * *"
  description = "when to run again on every node (cron): how long a new node may run without the mirror"
}

job "regcache-client-enable" {
  type        = "sysbatch"
  datacenters = var.datacenters
  namespace   = var.namespace

  periodic {
    crons            = [var.schedule]
    prohibit_overlap = true
  }

  # Only nodes that run dockerd, of the classes chosen for this step.
  constraint {
    attribute = "${attr.driver.docker}"
    value     = "1"
  }

  constraint {
    attribute = "${node.class}"
    operator  = "regexp"
    value     = var.node_class
  }

  group "enable" {
    restart {
      attempts = 2
      delay    = "15s"
      mode     = "fail"
    }

    # enable first (a prestart task); status runs only if it succeeded.
    task "enable" {
      # The task edits the host's /etc/docker and signals the host's dockerd.
      driver = "raw_exec"

      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      artifact {
        source      = var.regcache_url
        destination = "local/regcache"
        mode        = "file"
        options {
          checksum = var.regcache_checksum
        }
      }

      # Nomad makes a command in the task directory executable.
      config {
        command = "${NOMAD_TASK_DIR}/regcache"
        args    = ["client", "docker", "enable", "--mirror", var.mirror]
      }

      resources {
        cpu    = 50
        memory = 64
      }
    }

    task "status" {
      driver = "raw_exec"

      artifact {
        source      = var.regcache_url
        destination = "local/regcache"
        mode        = "file"
        options {
          checksum = var.regcache_checksum
        }
      }

      # Exit 0 only if the mirror is configured, active in dockerd and
      # answering: a failed allocation names the node that is not.
      config {
        command = "${NOMAD_TASK_DIR}/regcache"
        args    = ["client", "docker", "status", "--mirror", var.mirror]
      }

      resources {
        cpu    = 50
        memory = 64
      }
    }
  }
}
