# Takes the mirror out of every Nomad client node's dockerd: a sysbatch job
# runs `regcache client docker disable` once on each eligible node, which
# removes only what enable added (daemon.json.regcache-state), reloads
# dockerd with SIGHUP and checks the mirror is gone. A node where the
# operator had set the same mirror by hand fails (run it there with --force).
# Stop the enable job first, so it does not configure the nodes again:
#
#   nomad job stop -purge regcache-client-enable
#   nomad job run -var mirror=http://10.0.0.5:5000 deploy/nomad/client-disable.nomad.hcl
#   nomad job run -var mirror=http://10.0.0.5:5000 -var node_class='^canary$' deploy/nomad/client-disable.nomad.hcl
#
# The clients need the raw_exec driver (plugin "raw_exec" { config { enabled = true } })
# and the regcache binary at var.regcache. Roll-out and roll-back: docs/rollout.md.

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
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

variable "regcache" {
  type        = string
  default     = "/usr/local/bin/regcache"
  description = "the regcache binary on the nodes"
}

job "regcache-client-disable" {
  type        = "sysbatch"
  datacenters = var.datacenters

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

      config {
        command = var.regcache
        args    = ["client", "docker", "disable", "--mirror", var.mirror]
      }

      resources {
        cpu    = 50
        memory = 64
      }
    }
  }
}
