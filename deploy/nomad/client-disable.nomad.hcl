# Takes the mirror out of every Nomad client node's dockerd: a sysbatch job
# runs `regcache client docker disable` once on each eligible node, which
# removes only what enable added (daemon.json.regcache-state), reloads
# dockerd with SIGHUP and checks the mirror is gone. A node where the
# operator had set the same mirror by hand fails (run it there with --force).
# Stop the enable job first, so it does not configure the nodes again:
#
#   nomad job stop -purge regcache-client-enable
#   nomad job run -var mirror=http://192.0.2.1:5000 -var regcache_url=... -var regcache_checksum=sha256:... deploy/nomad/client-disable.nomad.hcl
#   nomad job run ... -var node_class='^canary$' deploy/nomad/client-disable.nomad.hcl
#
# The binary comes from var.regcache_url, checked against var.regcache_checksum.
# The task uses raw_exec: see docs/rollout.md, "Keeping raw_exec narrow".

variable "datacenters" {
  type        = list(string)
  default     = ["*"]
  description = "the datacenters to run in; \"*\" is every one"
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
  description = "a regular expression of the node classes to configure: '^canary$' to roll back those first, or '.*'"
}

variable "regcache_url" {
  type        = string
  description = "where the nodes download the regcache binary (linux, the nodes' architecture)"
}

variable "regcache_checksum" {
  type        = string
  description = "the binary's checksum as Nomad's artifact wants it: sha256:<hex>"
}

job "regcache-client-disable" {
  type        = "sysbatch"
  datacenters = var.datacenters
  namespace   = var.namespace

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

  group "disable" {
    restart {
      attempts = 2
      delay    = "15s"
      mode     = "fail"
    }

    task "disable" {
      # The task edits the host's /etc/docker and signals the host's dockerd.
      driver = "raw_exec"

      artifact {
        source      = var.regcache_url
        destination = "local/regcache"
        mode        = "file"
        options {
          checksum = var.regcache_checksum
        }
      }

      config {
        command = "${NOMAD_TASK_DIR}/regcache"
        args    = ["client", "docker", "disable", "--mirror", var.mirror]
      }

      resources {
        cpu    = 50
        memory = 64
      }
    }
  }
}
