# Points every Nomad client node's dockerd at the mirror: a sysbatch job
# runs `regcache client docker enable` once on each eligible node, which
# edits /etc/docker/daemon.json in place and reloads dockerd with SIGHUP
# (running containers are not touched). A node already configured is a
# no-op, so run it again for nodes added later.
#
#   nomad job run -var mirror=http://10.0.0.5:5000 deploy/nomad/client-enable.nomad.hcl
#   nomad job run -var mirror=http://10.0.0.5:5000 -var node_class='^canary$' deploy/nomad/client-enable.nomad.hcl
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
  description = "a regular expression of the node classes to configure: '^canary$' first, then '.*'"
}

variable "regcache" {
  type        = string
  default     = "/usr/local/bin/regcache"
  description = "the regcache binary on the nodes"
}

job "regcache-client-enable" {
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

  group "enable" {
    restart {
      attempts = 2
      delay    = "15s"
      mode     = "fail"
    }

    task "enable" {
      # The task edits the host's /etc/docker and signals the host's dockerd.
      driver = "raw_exec"

      config {
        command = var.regcache
        args    = ["client", "docker", "enable", "--mirror", var.mirror]
      }

      resources {
        cpu    = 50
        memory = 64
      }
    }
  }
}
