// Package nomad_test parses the Nomad job files of deploy/nomad with
// HashiCorp's HCL parser (the Nomad binary is not open source, so it is
// not used) and checks the fields docs/rollout.md and docs/quickstart.md
// rely on. It lives in the test module (test/e2e), with the HCL modules.
package nomad_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"sigs.k8s.io/yaml"

	"github.com/regcache/regcache/internal/cli"
	"github.com/regcache/regcache/internal/config"
)

// root is the repository's root, from this package's directory.
var root = filepath.Join("..", "..", "..")

// required are the variables without a default, with the values the test
// gives them (as an operator gives them with -var).
var required = map[string]string{
	"regcache_url":      "https://artifacts.example.com/regcache/1.0.0/regcache-linux-amd64",
	"regcache_checksum": "sha256:" + strings.Repeat("ab", 32),
}

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
			// A required variable (nomad job run fails without its -var):
			// the value docs/rollout.md gives.
			v, ok := required[b.Labels[0]]
			if !ok {
				t.Errorf("%s: variable %q has no default", name, b.Labels[0])
			}
			j.vars[b.Labels[0]] = cty.StringVal(v)
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
	for _, v := range []string{"datacenters", "node_class", "image", "upstream_url", "allow", "port"} {
		if _, ok := j.vars[v]; !ok {
			t.Errorf("no variable %q (docs/rollout.md passes it with -var)", v)
		}
	}
	job := j.block(j.body, "job", "regcache")
	j.want("type", j.str(job, "type"), "service")
	if dcs := j.strs(job, "datacenters"); !slices.Equal(dcs, []string{"*"}) {
		t.Errorf("datacenters %q: another name than the cluster's places nothing, and nomad job run still succeeds", dcs)
	}
	// Its own host, not a CI client: a node class of its own.
	var class string
	for _, c := range blocks(job, "constraint") {
		if j.source(c, "attribute") == `"${node.class}"` {
			class = j.str(c, "value")
			if _, ok := c.Attributes["operator"]; ok {
				t.Errorf("node class constraint with operator %s, want equality", j.str(c, "operator"))
			}
		}
	}
	j.want("node class", class, "regcache-mirror")
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
	j.want("image", j.str(j.block(task, "config"), "image"), "regcache:"+appVersion(t))
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

// TestClientJobs: the enable and disable jobs are sysbatch jobs in every
// datacenter, on nodes with dockerd of the chosen classes, on the raw_exec
// driver in a namespace of the operator's choosing, running the binary
// their artifact block downloads and checks; enable is periodic (nodes
// added later are configured at the next run) and runs status after
// enable. Their command lines are ones regcache accepts (enable and
// disable run here with --dry-run under a temporary --root; status's
// flags parsed).
func TestClientJobs(t *testing.T) {
	t.Parallel()
	for _, action := range []string{"enable", "disable"} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			j := parse(t, "client-"+action+".nomad.hcl")
			for _, v := range []string{"datacenters", "namespace", "mirror", "node_class", "regcache_url", "regcache_checksum"} {
				if _, ok := j.vars[v]; !ok {
					t.Errorf("no variable %q (docs/rollout.md passes it with -var)", v)
				}
			}
			job := j.block(j.body, "job", "regcache-client-"+action)
			j.want("type", j.str(job, "type"), "sysbatch")
			j.want("namespace", j.source(job, "namespace"), "var.namespace")
			if dcs := j.strs(job, "datacenters"); !slices.Equal(dcs, []string{"*"}) {
				t.Errorf("datacenters %q, want every one", dcs)
			}
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
			group := j.block(job, "group", action)
			tasks := map[string][]string{action: {"client", "docker", action, "--mirror", "http://192.0.2.1:5000"}}
			if action == "enable" {
				periodic := j.block(job, "periodic")
				j.want("periodic crons", j.source(periodic, "crons"), "[var.schedule]")
				if !j.value(periodic, "prohibit_overlap").True() {
					t.Error("periodic without prohibit_overlap: a slow run and the next would overlap on a node")
				}
				if f := strings.Fields(j.vars["schedule"].AsString()); len(f) != 5 {
					t.Errorf("schedule %q is not a five-field cron expression", j.vars["schedule"].AsString())
				}
				tasks["status"] = []string{"client", "docker", "status", "--mirror", "http://192.0.2.1:5000"}
				// enable before status: a prestart task that ends.
				lc := j.block(j.block(group, "task", "enable"), "lifecycle")
				if j.str(lc, "hook") != "prestart" || j.value(lc, "sidecar").True() {
					t.Errorf("enable's lifecycle: hook %s, sidecar %v; want a prestart task that ends", j.str(lc, "hook"), j.value(lc, "sidecar").True())
				}
			}
			if got := len(blocks(group, "task")); got != len(tasks) {
				t.Errorf("%d tasks, want %d", got, len(tasks))
			}
			for name, want := range tasks {
				task := j.block(group, "task", name)
				j.want(name+" driver", j.str(task, "driver"), "raw_exec")
				art := j.block(task, "artifact")
				j.want(name+" artifact source", j.source(art, "source"), "var.regcache_url")
				j.want(name+" artifact checksum", j.source(j.block(art, "options"), "checksum"), "var.regcache_checksum")
				j.want(name+" artifact mode", j.str(art, "mode"), "file")
				j.want(name+" artifact destination", j.str(art, "destination"), "local/regcache")
				cfg := j.block(task, "config")
				// The task directory's local/regcache, where the artifact lands.
				j.want(name+" command", j.source(cfg, "command"), `"${NOMAD_TASK_DIR}/regcache"`)
				args := j.strs(cfg, "args")
				if !slices.Equal(args, want) {
					t.Fatalf("%s args %q, want %q", name, args, want)
				}
				runRegcache(t, name, args)
			}
		})
	}
}

// runRegcache checks that args are a command line regcache accepts: enable
// and disable run with --dry-run under a temporary --root; status (which
// has no dry run) has its flags parsed.
func runRegcache(t *testing.T, task string, args []string) {
	t.Helper()
	cmd := cli.NewRoot()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	if task == "status" {
		sub, rest, err := cmd.Find(args)
		if err != nil || sub.Name() != "status" {
			t.Fatalf("regcache %s: %v", strings.Join(args, " "), err)
		}
		if err := sub.ParseFlags(rest); err != nil {
			t.Errorf("regcache %s: %v", strings.Join(args, " "), err)
		}
		if len(sub.Flags().Args()) != 0 {
			t.Errorf("regcache %s: stray arguments %q", strings.Join(args, " "), sub.Flags().Args())
		}
		return
	}
	cmd.SetArgs(append(args, "--dry-run", "--root", t.TempDir()))
	if err := cmd.Execute(); err != nil {
		t.Errorf("regcache %s --dry-run: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	if !strings.Contains(out.String(), "http://192.0.2.1:5000") {
		t.Errorf("regcache %s --dry-run said:\n%s", strings.Join(args, " "), out.String())
	}
}

// appVersion is the Helm chart's appVersion: the image tag of `make image`.
func appVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy", "helm", "regcache", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &chart); err != nil || chart.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion %q: %v", chart.AppVersion, err)
	}
	return chart.AppVersion
}

// TestRolloutDocNamesTheFiles: docs/rollout.md runs these files, with
// their variables, rather than copies that could drift.
func TestRolloutDocNamesTheFiles(t *testing.T) {
	t.Parallel()
	doc := readDoc(t, filepath.Join(root, "docs", "rollout.md"))
	for _, want := range []string{
		"nomad job run -var-file=client.vars.hcl -var node_class='^canary$' deploy/nomad/client-enable.nomad.hcl",
		"nomad job periodic force regcache-client-enable",
		"nomad job run -var-file=client.vars.hcl deploy/nomad/client-enable.nomad.hcl",
		"nomad job run -var-file=client.vars.hcl deploy/nomad/client-disable.nomad.hcl",
		"nomad job stop -purge regcache-client-enable",
		"nomad job run deploy/nomad/regcache.nomad.hcl",
		`nomad var put nomad/jobs/regcache`,
		`host_volume "regcache-cache"`,
		`node_class = "regcache-mirror"`,
		`disabled_task_drivers = ["raw_exec"]`,
		`enabled_task_drivers = ["raw_exec"]`,
		"regcache client docker enable --mirror http://192.0.2.1:5000\nregcache client docker status --mirror http://192.0.2.1:5000\n",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/rollout.md does not say %q", want)
		}
	}
}

// TestClientVarsFile: client.vars.hcl, the file docs/rollout.md passes
// with -var-file, sets only variables both client jobs declare (a value
// for an undeclared one is Nomad's diagnostic, not a setting), and every one they require.
func TestClientVarsFile(t *testing.T) {
	t.Parallel()
	f, diags := hclparse.NewParser().ParseHCLFile(filepath.Join(root, "deploy", "nomad", "client.vars.hcl"))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	set := map[string]string{}
	attrs, diags := f.Body.JustAttributes()
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	for name, a := range attrs {
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() || v.Type() != cty.String {
			t.Fatalf("%s: %s", name, diags.Error())
		}
		set[name] = v.AsString()
	}
	for _, action := range []string{"enable", "disable"} {
		j := parse(t, "client-"+action+".nomad.hcl")
		for name := range set {
			if _, ok := j.vars[name]; !ok {
				t.Errorf("client.vars.hcl sets %s, which %s does not declare", name, j.name)
			}
		}
	}
	for name := range required {
		if _, ok := set[name]; !ok {
			t.Errorf("client.vars.hcl does not set the required %s", name)
		}
	}
	if sum := set["regcache_checksum"]; !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(sum) {
		t.Errorf("regcache_checksum %q is not sha256:<hex>, the form Nomad's artifact checks", sum)
	}
	if set["namespace"] != "regcache-ops" {
		t.Errorf("namespace %q, want the one docs/rollout.md allows raw_exec in", set["namespace"])
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
