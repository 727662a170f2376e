// Package nomad_test parses the Nomad job files of deploy/nomad with
// HashiCorp's HCL parser (the Nomad binary is not open source, so it is
// not used) and checks the fields docs/rollout.md and docs/quickstart.md
// rely on. It lives in the test module (test/e2e), with the HCL modules.
package nomad_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/regcache/regcache/internal/cli"
	"github.com/regcache/regcache/internal/config"
)

// root is the repository's root, from this package's directory.
var root = filepath.Join("..", "..", "..")

// jobFile is a parsed job file: its source, body, and the defaults of its
// variable blocks as `var`.
type jobFile struct {
	t    *testing.T
	name string
	src  []byte
	body *hclsyntax.Body
	vars map[string]cty.Value
}

func parse(t *testing.T, name string) *jobFile {
	t.Helper()
	p := hclparse.NewParser()
	f, diags := p.ParseHCLFile(filepath.Join(root, "deploy", "nomad", name))
	if diags.HasErrors() {
		t.Fatalf("%s: %s", name, diags.Error())
	}
	j := &jobFile{t: t, name: name, src: f.Bytes, body: f.Body.(*hclsyntax.Body), vars: map[string]cty.Value{}}
	for _, b := range j.body.Blocks {
		if b.Type != "variable" {
			continue
		}
		def, ok := b.Body.Attributes["default"]
		if !ok {
			t.Errorf("%s: variable %q has no default", name, b.Labels[0])
			continue
		}
		v, diags := def.Expr.Value(nil)
		if diags.HasErrors() {
			t.Errorf("%s: variable %q: %s", name, b.Labels[0], diags.Error())
		}
		j.vars[b.Labels[0]] = v
	}
	return j
}

// block returns the one block of type (and labels) under body.
func (j *jobFile) block(body *hclsyntax.Body, typ string, labels ...string) *hclsyntax.Body {
	j.t.Helper()
	var found []*hclsyntax.Body
	for _, b := range body.Blocks {
		if b.Type == typ && slices.Equal(b.Labels, labels) {
			found = append(found, b.Body)
		}
	}
	if len(found) != 1 {
		j.t.Fatalf("%s: %d blocks %s %q, want one", j.name, len(found), typ, labels)
	}
	return found[0]
}

// blocks returns every block of type under body.
func blocks(body *hclsyntax.Body, typ string) []*hclsyntax.Body {
	var out []*hclsyntax.Body
	for _, b := range body.Blocks {
		if b.Type == typ {
			out = append(out, b.Body)
		}
	}
	return out
}

// value evaluates attribute name of body with var set to the defaults.
// Nomad's runtime interpolations (${attr.…}, ${NOMAD_…}) are not HCL
// variables; use source for those.
func (j *jobFile) value(body *hclsyntax.Body, name string) cty.Value {
	j.t.Helper()
	a, ok := body.Attributes[name]
	if !ok {
		j.t.Fatalf("%s: no attribute %s", j.name, name)
	}
	v, diags := a.Expr.Value(&hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(j.vars)}})
	if diags.HasErrors() {
		j.t.Fatalf("%s: %s: %s", j.name, name, diags.Error())
	}
	return v
}

// str is value as a Go string.
func (j *jobFile) str(body *hclsyntax.Body, name string) string {
	j.t.Helper()
	v := j.value(body, name)
	if v.Type() == cty.Number {
		return v.AsBigFloat().Text('f', -1)
	}
	if v.Type() != cty.String {
		j.t.Fatalf("%s: %s is %s, not a string", j.name, name, v.Type().FriendlyName())
	}
	return v.AsString()
}

// strs is value as a list of Go strings.
func (j *jobFile) strs(body *hclsyntax.Body, name string) []string {
	j.t.Helper()
	var out []string
	for _, e := range j.value(body, name).AsValueSlice() {
		out = append(out, e.AsString())
	}
	return out
}

// source is the attribute's expression as written.
func (j *jobFile) source(body *hclsyntax.Body, name string) string {
	j.t.Helper()
	a, ok := body.Attributes[name]
	if !ok {
		j.t.Fatalf("%s: no attribute %s", j.name, name)
	}
	r := a.Expr.Range()
	return string(j.src[r.Start.Byte:r.End.Byte])
}

func (j *jobFile) want(what, got, want string) {
	j.t.Helper()
	if got != want {
		j.t.Errorf("%s: %s = %q, want %q", j.name, what, got, want)
	}
}

// TestServiceJob: the mirror's job runs the image on the docker driver
// with the cache on a host volume at the image's volume path, the
// registry on the static port the clients name, a /readyz check on the
// admin port, the account from Nomad Variables, and only variables
// regcache reads.
func TestServiceJob(t *testing.T) {
	j := parse(t, "regcache.nomad.hcl")
	for _, v := range []string{"datacenters", "image", "upstream_url", "allow", "port"} {
		if _, ok := j.vars[v]; !ok {
			t.Errorf("no variable %q (docs/rollout.md passes it with -var)", v)
		}
	}
	job := j.block(j.body, "job", "regcache")
	j.want("type", j.str(job, "type"), "service")
	group := j.block(job, "group", "mirror")
	j.want("count", j.str(group, "count"), "1")
	vol := j.block(group, "volume", "cache")
	j.want("volume type", j.str(vol, "type"), "host")
	j.want("volume source", j.str(vol, "source"), "regcache-cache")
	network := j.block(group, "network")
	registry := j.block(network, "port", "registry")
	j.want("registry port", j.str(registry, "static"), "5000")
	j.want("registry port to", j.str(registry, "to"), "5000")
	j.want("admin port to", j.str(j.block(network, "port", "admin"), "to"), "5001")
	check := j.block(j.block(group, "service"), "check")
	j.want("check type", j.str(check, "type"), "http")
	j.want("check path", j.str(check, "path"), "/readyz")
	j.want("check port", j.str(check, "port"), "admin")

	task := j.block(group, "task", "regcache")
	j.want("driver", j.str(task, "driver"), "docker")
	j.want("image", j.str(j.block(task, "config"), "image"), "regcache:latest")
	if got := j.strs(j.block(task, "config"), "ports"); !slices.Equal(got, []string{"registry", "admin"}) {
		t.Errorf("config.ports = %q", got)
	}
	mount := j.block(task, "volume_mount")
	j.want("volume_mount", j.str(mount, "volume")+" "+j.str(mount, "destination"), "cache /var/lib/registry")
	env := j.block(task, "env")
	j.want("REGISTRY_PROXY_REMOTEURL", j.str(env, "REGISTRY_PROXY_REMOTEURL"), "https://registry-1.docker.io")
	j.want("REGCACHE_PASSWORD_FILE", j.source(env, "REGCACHE_PASSWORD_FILE"), `"${NOMAD_SECRETS_DIR}/hub-token"`)
	names := []string{"REGISTRY_PROXY_USERNAME", "REGCACHE_ADMIN_TOKEN"}
	for name := range env.Attributes {
		names = append(names, name)
	}
	checkVariables(t, names)

	var envTemplate, tokenTemplate bool
	for _, tpl := range blocks(task, "template") {
		data := j.str(tpl, "data")
		if !strings.Contains(data, `nomadVar "nomad/jobs/regcache"`) {
			t.Errorf("a template does not read the job's Nomad Variables: %q", data)
		}
		switch j.str(tpl, "destination") {
		case "secrets/hub.env":
			envTemplate = j.value(tpl, "env").True() && strings.Contains(data, "REGISTRY_PROXY_USERNAME={{ .username }}") &&
				strings.Contains(data, "REGCACHE_ADMIN_TOKEN={{ .admin_token }}")
		case "secrets/hub-token":
			tokenTemplate = strings.Contains(data, "{{ .token }}") && j.str(tpl, "uid") == "65532" && j.str(tpl, "perms") == "0400"
		}
	}
	if !envTemplate || !tokenTemplate {
		t.Errorf("templates: env file %v, token file readable by the image's user only %v", envTemplate, tokenTemplate)
	}
	if kill := j.str(task, "kill_timeout"); kill != "45s" {
		t.Errorf("kill_timeout %s: want 45s, past the 30 s drain", kill)
	}
}

// checkVariables fails for a name regcache would reject as unknown or
// name in its start-up warning of unused REGISTRY_* variables. It sets
// them in the process's environment, where Load looks for unknown names,
// so its callers cannot run in parallel.
func checkVariables(t *testing.T, names []string) {
	t.Helper()
	for _, name := range names {
		if !strings.HasPrefix(name, "REGCACHE_") && !strings.HasPrefix(name, "REGISTRY_") {
			t.Errorf("env %s is not regcache's", name)
			continue
		}
		t.Setenv(name, "")
		c, err := config.Load(nil, os.LookupEnv)
		os.Unsetenv(name)
		if err != nil && strings.Contains(err.Error(), "unknown environment variable") {
			t.Errorf("env %s: %v", name, err)
		}
		for _, w := range c.Warnings {
			if strings.Contains(w, name) {
				t.Errorf("env %s: %s", name, w)
			}
		}
	}
}

// TestClientJobs: the enable and disable jobs are sysbatch jobs on the
// raw_exec driver, on nodes with dockerd of the chosen classes, and their
// command line is one regcache accepts (run here with --dry-run under a
// temporary --root).
func TestClientJobs(t *testing.T) {
	t.Parallel()
	for _, action := range []string{"enable", "disable"} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			j := parse(t, "client-"+action+".nomad.hcl")
			for _, v := range []string{"datacenters", "mirror", "node_class", "regcache"} {
				if _, ok := j.vars[v]; !ok {
					t.Errorf("no variable %q (docs/rollout.md passes it with -var)", v)
				}
			}
			job := j.block(j.body, "job", "regcache-client-"+action)
			j.want("type", j.str(job, "type"), "sysbatch")
			var docker, class bool
			for _, c := range blocks(job, "constraint") {
				switch j.source(c, "attribute") {
				case `"${attr.driver.docker}"`:
					docker = j.str(c, "value") == "1"
				case `"${node.class}"`:
					class = j.str(c, "operator") == "regexp" && j.str(c, "value") == ".*"
				}
			}
			if !docker || !class {
				t.Errorf("constraints: dockerd %v, node class %v", docker, class)
			}
			task := j.block(j.block(job, "group", action), "task", action)
			j.want("driver", j.str(task, "driver"), "raw_exec")
			cfg := j.block(task, "config")
			j.want("command", j.str(cfg, "command"), "/usr/local/bin/regcache")
			args := j.strs(cfg, "args")
			if want := []string{"client", "docker", action, "--mirror", "http://192.0.2.1:5000"}; !slices.Equal(args, want) {
				t.Fatalf("args %q, want %q", args, want)
			}
			root := cli.NewRoot()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(append(args, "--dry-run", "--root", t.TempDir()))
			if err := root.Execute(); err != nil {
				t.Errorf("regcache %s --dry-run: %v\n%s", strings.Join(args, " "), err, out.String())
			}
			if !strings.Contains(out.String(), "http://192.0.2.1:5000") {
				t.Errorf("regcache %s --dry-run said:\n%s", strings.Join(args, " "), out.String())
			}
		})
	}
}

// TestRolloutDocNamesTheFiles: docs/rollout.md runs these files, with
// their variables, rather than copies that could drift.
func TestRolloutDocNamesTheFiles(t *testing.T) {
	t.Parallel()
	doc := readDoc(t, filepath.Join(root, "docs", "rollout.md"))
	for _, want := range []string{
		"nomad job run -var mirror=http://192.0.2.1:5000 deploy/nomad/client-enable.nomad.hcl",
		"-var node_class='^canary$'",
		"nomad job run -var mirror=http://192.0.2.1:5000 deploy/nomad/client-disable.nomad.hcl",
		"nomad job stop -purge regcache-client-enable",
		"nomad job run deploy/nomad/regcache.nomad.hcl",
		`nomad var put nomad/jobs/regcache`,
		`host_volume "regcache-cache"`,
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/rollout.md does not say %q", want)
		}
	}
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
