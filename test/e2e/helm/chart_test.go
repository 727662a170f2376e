// Package helm_test renders deploy/helm/regcache with Helm's own Go
// library and decodes every object strictly into the Kubernetes API types
// (an unknown or misspelt field fails), then checks that the objects fit
// together and that the regcache.yaml the chart writes is one regcache
// accepts. It lives in the test module (test/e2e) so that regcache's own
// module does not require Helm and the Kubernetes modules.
package helm_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/testenv"
)

// chartDir is the chart, from this package's directory.
var chartDir = filepath.Join("..", "..", "..", "deploy", "helm", "regcache")

// objects are one render's decoded objects by kind and name.
type objects struct {
	statefulSets    map[string]*appsv1.StatefulSet
	services        map[string]*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	ingresses       map[string]*networkingv1.Ingress
	networkPolicies map[string]*networkingv1.NetworkPolicy
	serviceMonitors map[string]*monitoringv1.ServiceMonitor
	notes           string
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load the chart: %v", err)
	}
	if err := ch.Validate(); err != nil {
		t.Fatalf("chart metadata: %v", err)
	}
	return ch
}

// render renders the chart with vals (YAML) as release "mirror" in
// namespace "ci" and decodes every object strictly.
func render(t *testing.T, ch *chart.Chart, vals string) objects {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(vals), &m); err != nil {
		t.Fatalf("values: %v", err)
	}
	rv, err := util.ToRenderValues(ch, m, common.ReleaseOptions{Name: "mirror", Namespace: "ci", IsInstall: true, Revision: 1}, nil)
	if err != nil {
		t.Fatalf("render values: %v", err)
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	o := objects{
		statefulSets: map[string]*appsv1.StatefulSet{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		ingresses: map[string]*networkingv1.Ingress{}, networkPolicies: map[string]*networkingv1.NetworkPolicy{},
		serviceMonitors: map[string]*monitoringv1.ServiceMonitor{},
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.HasSuffix(name, "NOTES.txt") {
			o.notes = files[name]
			continue
		}
		if strings.HasSuffix(name, ".tpl") {
			continue
		}
		for i, doc := range strings.Split(files[name], "\n---") {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			o.add(t, fmt.Sprintf("%s#%d", name, i), []byte(doc))
		}
	}
	return o
}

// stripComments drops YAML comment lines.
func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.Lines(doc) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// add decodes one rendered document into its API type, refusing unknown
// fields, and checks its metadata.
func (o *objects) add(t *testing.T, where string, doc []byte) {
	t.Helper()
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		t.Fatalf("%s: %v\n%s", where, err, doc)
	}
	strict := func(into any) {
		t.Helper()
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			t.Fatalf("%s: %s %s does not decode strictly: %v\n%s", where, tm.APIVersion, tm.Kind, err, doc)
		}
	}
	var meta metav1.ObjectMeta
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 StatefulSet":
		var x appsv1.StatefulSet
		strict(&x)
		o.statefulSets[x.Name], meta = &x, x.ObjectMeta
	case "v1 Service":
		var x corev1.Service
		strict(&x)
		o.services[x.Name], meta = &x, x.ObjectMeta
	case "v1 ConfigMap":
		var x corev1.ConfigMap
		strict(&x)
		o.configMaps[x.Name], meta = &x, x.ObjectMeta
	case "v1 Secret":
		var x corev1.Secret
		strict(&x)
		o.secrets[x.Name], meta = &x, x.ObjectMeta
	case "networking.k8s.io/v1 Ingress":
		var x networkingv1.Ingress
		strict(&x)
		o.ingresses[x.Name], meta = &x, x.ObjectMeta
	case "networking.k8s.io/v1 NetworkPolicy":
		var x networkingv1.NetworkPolicy
		strict(&x)
		o.networkPolicies[x.Name], meta = &x, x.ObjectMeta
	case "monitoring.coreos.com/v1 ServiceMonitor":
		var x monitoringv1.ServiceMonitor
		strict(&x)
		o.serviceMonitors[x.Name], meta = &x, x.ObjectMeta
	default:
		t.Fatalf("%s: unexpected object %s %s", where, tm.APIVersion, tm.Kind)
	}
	for _, msg := range validation.IsDNS1123Subdomain(meta.Name) {
		t.Errorf("%s: name %q: %s", where, meta.Name, msg)
	}
	if meta.Labels["app.kubernetes.io/instance"] != "mirror" || meta.Labels["app.kubernetes.io/name"] != "regcache" {
		t.Errorf("%s: labels %v", where, meta.Labels)
	}
	for k, v := range meta.Labels {
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
			t.Errorf("%s: label %s=%q: %v", where, k, v, msgs)
		}
	}
}

// fullValues sets every value the chart documents.
const fullValues = `
image: {repository: registry.example.com/regcache, tag: "1.2.3", pullPolicy: Always}
imagePullSecrets: [{name: pull}]
replicas: 2
upstream:
  url: https://registry-1.docker.io
  name: docker.io
  username: myhubuser
  password: dckr_pat_secret
  aliases: [index.docker.io]
extraUpstreams:
  - {name: ghcr.io, url: "https://ghcr.io"}
config:
  freshness: 5m
  fillTimeout: 10m
  prefetch: {enabled: false, parallel: 4}
  storage: {maxSize: 200GiB, maxAge: 720h, maxBlobSize: 32GiB}
  access:
    allow: [10.0.0.0/8, 192.0.2.0/24]
    trustedProxies: [10.1.0.0/16]
    private: authenticated
    htpasswd: "ci:$2y$05$abcdefghijklmnopqrstuu5ySmfa1oG3dPqx0Dkl8uwYQDQ7Wm0lO"
    users: {ci: ["myorg/*"]}
  log: {level: debug, format: text}
adminToken: {value: admin-secret-0123456789}
tls: {existingSecret: mirror-tls}
persistence: {size: 200Gi, storageClass: fast, accessModes: [ReadWriteOnce], annotations: {backup: "no"}}
service: {type: NodePort, port: 5000, nodePort: 30500, externalTrafficPolicy: Local, loadBalancerSourceRanges: [10.20.0.0/16], adminPort: 5001, annotations: {a: b}}
ingress:
  enabled: true
  className: nginx
  annotations: {nginx.ingress.kubernetes.io/proxy-body-size: "0"}
  hosts: [{host: mirror.example.com, paths: [{path: /, pathType: Prefix}]}]
  tls: [{secretName: mirror-cert, hosts: [mirror.example.com]}]
networkPolicy:
  enabled: true
  allowCIDRs: [10.0.0.0/8, 192.0.2.0/24]
  registryFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}}]
  adminFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
serviceMonitor: {enabled: true, interval: 15s, scrapeTimeout: 5s, labels: {release: prometheus}}
resources: {requests: {cpu: "1", memory: 512Mi}, limits: {memory: 2Gi}}
podAnnotations: {team: ci}
podLabels: {tier: infra}
nodeSelector: {disk: ssd}
tolerations: [{key: dedicated, operator: Equal, value: mirror, effect: NoSchedule}]
affinity: {podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 1, podAffinityTerm: {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app.kubernetes.io/name: regcache}}}}]}}
priorityClassName: high
terminationGracePeriodSeconds: 60
extraEnv: [{name: REGCACHE_MAX_AGE, value: 168h}]
extraVolumes: [{name: ghcr, secret: {secretName: ghcr-token}}]
extraVolumeMounts: [{name: ghcr, mountPath: /etc/regcache/ghcr, readOnly: true}]
`

// existingSecretsValues names Secrets the chart does not make.
const existingSecretsValues = `
upstream: {username: me, existingSecret: hub, existingSecretKey: token}
adminToken: {existingSecret: admin, existingSecretKey: t}
config: {access: {htpasswdExistingSecret: logins, htpasswdExistingSecretKey: file}}
networkPolicy: {enabled: false}
`

func TestChartDefaults(t *testing.T) {
	t.Parallel()
	ch := loadChart(t)
	o := render(t, ch, "")
	sts := o.check(t, ch)
	if len(o.secrets) != 0 || len(o.ingresses) != 0 || len(o.serviceMonitors) != 0 {
		t.Errorf("defaults render secrets %v, ingresses %v, service monitors %v", keys(o.secrets), keys(o.ingresses), keys(o.serviceMonitors))
	}
	if len(o.networkPolicies) != 1 {
		t.Errorf("defaults render network policies %v, want one", keys(o.networkPolicies))
	}
	c := o.loadConfig(t, sts, nil)
	if c.Upstreams[0].URL != "https://registry-1.docker.io" || c.Upstreams[0].Username != "" || c.Storage.MaxSizePercent != 80 ||
		c.Data != "/var/lib/registry" || c.AdminAddr != ":5001" || c.AdminToken != "" {
		t.Errorf("default configuration %+v", c)
	}
	if img := sts.Spec.Template.Spec.Containers[0].Image; img != "regcache:"+ch.Metadata.AppVersion {
		t.Errorf("image %s", img)
	}
	if !strings.Contains(o.notes, "mirror-regcache.ci.svc:5000") || !strings.Contains(o.notes, "service.type is ClusterIP") ||
		!strings.Contains(o.notes, "--set service.type=LoadBalancer") {
		t.Errorf("NOTES.txt:\n%s", o.notes)
	}
	if svc := o.services["mirror-regcache"]; svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("default service type %s", svc.Spec.Type)
	}
}

func TestChartFullValues(t *testing.T) {
	t.Parallel()
	ch := loadChart(t)
	o := render(t, ch, fullValues)
	sts := o.check(t, ch)
	if got := keys(o.secrets); !slices.Equal(got, []string{"mirror-regcache-admin", "mirror-regcache-htpasswd", "mirror-regcache-upstream"}) {
		t.Errorf("secrets %v", got)
	}
	if pw := string(o.secrets["mirror-regcache-upstream"].Data["password"]); pw != "dckr_pat_secret" {
		t.Errorf("upstream secret holds %q", pw)
	}
	c := o.loadConfig(t, sts, map[string]map[string][]byte{
		"mirror-tls": {"tls.crt": []byte("cert"), "tls.key": []byte("key")},
		"ghcr-token": {"token": []byte("x")},
	})
	pw, err := c.Password(0)
	if err != nil || pw != "dckr_pat_secret" {
		t.Errorf("upstream password %q, %v", pw, err)
	}
	want := []string{"docker.io https://registry-1.docker.io myhubuser [index.docker.io]", "ghcr.io https://ghcr.io  []"}
	for i, u := range c.Upstreams {
		if got := fmt.Sprintf("%s %s %s %v", u.Name, u.URL, u.Username, u.Aliases); i >= len(want) || got != want[i] {
			t.Errorf("upstream %d: %s", i, got)
		}
	}
	if c.Freshness.String() != "5m0s" || c.FillTimeout.String() != "10m0s" || c.Prefetch.Enabled || c.Prefetch.Parallel != 4 ||
		c.Storage.MaxSize != 200<<30 || c.Storage.MaxAge.String() != "168h0m0s" || c.Storage.MaxBlobSize != 32<<30 ||
		len(c.Access.Allow) != 2 || len(c.Access.TrustedProxies) != 1 || c.Access.Private != "authenticated" ||
		c.Access.Htpasswd == "" || !slices.Equal(c.Access.Users["ci"], []string{"myorg/*"}) ||
		c.TLS.Cert == "" || c.Log.Level != "debug" || c.Log.Format != "text" || c.AdminToken != "admin-secret-0123456789" {
		t.Errorf("full configuration %+v", c)
	}

	spec := sts.Spec.Template.Spec
	if *sts.Spec.Replicas != 2 || spec.Containers[0].Image != "registry.example.com/regcache:1.2.3" || spec.PriorityClassName != "high" ||
		spec.NodeSelector["disk"] != "ssd" || len(spec.Tolerations) != 1 || spec.Affinity == nil || len(spec.ImagePullSecrets) != 1 ||
		*spec.TerminationGracePeriodSeconds != 60 || sts.Spec.Template.Labels["tier"] != "infra" || sts.Spec.Template.Annotations["team"] != "ci" {
		t.Errorf("pod spec from the values: %+v", spec)
	}
	pvc := sts.Spec.VolumeClaimTemplates[0]
	if *pvc.Spec.StorageClassName != "fast" || !pvc.Spec.Resources.Requests[corev1.ResourceStorage].Equal(resource.MustParse("200Gi")) {
		t.Errorf("claim %+v", pvc.Spec)
	}
	svc := o.services["mirror-regcache"]
	if svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.Ports[0].NodePort != 30500 ||
		svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("service %+v", svc.Spec)
	}
	if !strings.Contains(o.notes, "jsonpath='{.spec.ports[0].nodePort}'") ||
		!strings.Contains(o.notes, "regcache client docker enable --mirror http://$MIRROR_IP:$MIRROR_PORT") {
		t.Errorf("NOTES.txt for a NodePort:\n%s", o.notes)
	}
	ing := o.ingresses["mirror-regcache"]
	if b := ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service; b.Name != svc.Name || b.Port.Name != "registry" || *ing.Spec.IngressClassName != "nginx" {
		t.Errorf("ingress backend %+v", b)
	}
	np := o.networkPolicies["mirror-regcache"]
	var cidrs []string
	for _, p := range np.Spec.Ingress[0].From {
		if p.IPBlock != nil {
			cidrs = append(cidrs, p.IPBlock.CIDR)
		}
	}
	if !slices.Equal(cidrs, []string{"10.0.0.0/8", "192.0.2.0/24"}) || len(np.Spec.Ingress[0].From) != 3 ||
		np.Spec.Ingress[0].Ports[0].Port.StrVal != "registry" || np.Spec.Ingress[1].Ports[0].Port.StrVal != "admin" {
		t.Errorf("network policy %+v", np.Spec)
	}
	sm := o.serviceMonitors["mirror-regcache"]
	if sm.Labels["release"] != "prometheus" || sm.Spec.Endpoints[0].Port != "admin" || sm.Spec.Endpoints[0].Path != "/metrics" ||
		string(sm.Spec.Endpoints[0].Interval) != "15s" || !selects(sm.Spec.Selector.MatchLabels, o.services["mirror-regcache-admin"].Labels) {
		t.Errorf("service monitor %+v", sm.Spec)
	}
	for name, s := range o.services {
		if name != "mirror-regcache-admin" && selects(sm.Spec.Selector.MatchLabels, s.Labels) {
			t.Errorf("the service monitor also selects service %s, which has no admin port", name)
		}
	}
}

func TestChartExistingSecrets(t *testing.T) {
	t.Parallel()
	ch := loadChart(t)
	o := render(t, ch, existingSecretsValues)
	sts := o.check(t, ch)
	if len(o.secrets) != 0 || len(o.networkPolicies) != 0 {
		t.Errorf("with existing secrets the chart renders secrets %v, network policies %v", keys(o.secrets), keys(o.networkPolicies))
	}
	c := o.loadConfig(t, sts, map[string]map[string][]byte{
		"hub":    {"token": []byte("from-existing\n")},
		"admin":  {"t": []byte("adm-from-existing-secret")},
		"logins": {"file": []byte("ci:$2y$05$abcdefghijklmnopqrstuu5ySmfa1oG3dPqx0Dkl8uwYQDQ7Wm0lO\n")},
	})
	if pw, err := c.Password(0); err != nil || pw != "from-existing" || c.AdminToken != "adm-from-existing-secret" || c.Access.Htpasswd == "" {
		t.Errorf("configuration from existing secrets: %q %v %+v", pw, err, c)
	}
}

// check holds what every render must: one StatefulSet whose pods run as
// the image's user with a read-only root, its claim at the image's volume,
// probes on the admin port, every mount backed by a volume, services and
// network policy selecting its pods. It returns the StatefulSet.
func (o objects) check(t *testing.T, ch *chart.Chart) *appsv1.StatefulSet {
	t.Helper()
	if len(o.statefulSets) != 1 {
		t.Fatalf("statefulsets %v, want one", keys(o.statefulSets))
	}
	sts := o.statefulSets["mirror-regcache"]
	if sts == nil {
		t.Fatalf("no statefulset mirror-regcache: %v", keys(o.statefulSets))
	}
	pod := sts.Spec.Template
	if !selects(sts.Spec.Selector.MatchLabels, pod.Labels) {
		t.Errorf("statefulset selector %v does not select its pods %v", sts.Spec.Selector.MatchLabels, pod.Labels)
	}
	if _, ok := o.services[sts.Spec.ServiceName]; !ok || o.services[sts.Spec.ServiceName].Spec.ClusterIP != "None" {
		t.Errorf("serviceName %q is not a headless service of the chart", sts.Spec.ServiceName)
	}
	psc := pod.Spec.SecurityContext
	if psc == nil || !*psc.RunAsNonRoot || *psc.RunAsUser != 65532 || *psc.FSGroup != 65532 {
		t.Errorf("pod security context %+v", psc)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("containers %d", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if sc := c.SecurityContext; sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context %+v", c.SecurityContext)
	}
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Port.StrVal != "admin" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probes %+v %+v", c.ReadinessProbe, c.LivenessProbe)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["registry"] != 5000 || ports["admin"] != 5001 {
		t.Errorf("container ports %v", ports)
	}
	volumes := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = true
	}
	for _, claim := range sts.Spec.VolumeClaimTemplates {
		volumes[claim.Name] = true
	}
	var data bool
	for _, m := range c.VolumeMounts {
		if !volumes[m.Name] {
			t.Errorf("mount %s at %s has no volume", m.Name, m.MountPath)
		}
		data = data || (m.Name == "data" && m.MountPath == "/var/lib/registry")
	}
	if !data || len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Name != "data" {
		t.Errorf("the cache is not a claim mounted at /var/lib/registry")
	}
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil && o.configMaps[v.ConfigMap.Name] == nil {
			t.Errorf("volume %s: no configmap %s", v.Name, v.ConfigMap.Name)
		}
	}
	// The admin port is on its own ClusterIP Service, and on no other:
	// service.type LoadBalancer or NodePort exposes the registry only.
	admin := o.services[sts.Name+"-admin"]
	if admin == nil || admin.Spec.Type != corev1.ServiceTypeClusterIP || len(admin.Spec.Ports) != 1 ||
		admin.Spec.Ports[0].TargetPort.StrVal != "admin" {
		t.Errorf("admin service %s: %+v", sts.Name+"-admin", admin)
	}
	for name, svc := range o.services {
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.StrVal == "admin" && svc != admin {
				t.Errorf("service %s (%s) carries the admin port", name, svc.Spec.Type)
			}
		}
	}
	for name, svc := range o.services {
		if !selects(svc.Spec.Selector, pod.Labels) {
			t.Errorf("service %s selects %v, not the pods %v", name, svc.Spec.Selector, pod.Labels)
		}
		for _, p := range svc.Spec.Ports {
			if _, ok := ports[p.TargetPort.StrVal]; !ok {
				t.Errorf("service %s port %s targets %q, no container port", name, p.Name, p.TargetPort.StrVal)
			}
		}
	}
	for name, np := range o.networkPolicies {
		if !selects(np.Spec.PodSelector.MatchLabels, pod.Labels) {
			t.Errorf("network policy %s does not select the pods", name)
		}
		for _, r := range np.Spec.Ingress {
			for _, p := range r.Ports {
				if _, ok := ports[p.Port.StrVal]; !ok {
					t.Errorf("network policy %s names port %v, no container port", name, p.Port)
				}
			}
		}
	}
	if ch.Metadata.AppVersion == "" {
		t.Error("Chart.yaml has no appVersion (the image tag's default)")
	}
	return sts
}

// loadConfig writes the files the container would see (the ConfigMap and
// every Secret it mounts, rendered or given in existing) under a temporary
// root, resolves its environment the way the kubelet would, and loads the
// configuration with regcache's own loader: the chart's regcache.yaml must
// be one regcache accepts, with no warning.
func (o objects) loadConfig(t *testing.T, sts *appsv1.StatefulSet, existing map[string]map[string][]byte) config.Config {
	t.Helper()
	root := t.TempDir()
	secretData := func(name string) map[string][]byte {
		if s, ok := o.secrets[name]; ok {
			return s.Data
		}
		if d, ok := existing[name]; ok {
			return d
		}
		t.Fatalf("secret %s is neither rendered nor given", name)
		return nil
	}
	pod := sts.Spec.Template.Spec
	c := pod.Containers[0]
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			continue // the claim
		}
		files := map[string][]byte{}
		switch {
		case v.ConfigMap != nil:
			for k, s := range o.configMaps[v.ConfigMap.Name].Data {
				files[k] = []byte(strings.ReplaceAll(s, "/etc/regcache/", root+"/etc/regcache/"))
			}
		case v.Secret != nil:
			data := secretData(v.Secret.SecretName)
			if len(v.Secret.Items) == 0 {
				files = data
			}
			for _, it := range v.Secret.Items {
				b, ok := data[it.Key]
				if !ok {
					t.Fatalf("volume %s: secret %s has no key %s", v.Name, v.Secret.SecretName, it.Key)
				}
				files[it.Path] = b
			}
		}
		for name, b := range files {
			p := filepath.Join(root, m.MountPath, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = strings.ReplaceAll(e.Value, "/etc/regcache/", root+"/etc/regcache/")
		case e.ValueFrom.SecretKeyRef != nil:
			b, ok := secretData(e.ValueFrom.SecretKeyRef.Name)[e.ValueFrom.SecretKeyRef.Key]
			if !ok {
				t.Fatalf("env %s: secret %s has no key %s", e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
			}
			env[e.Name] = string(b)
		default:
			t.Fatalf("env %s: unexpected source", e.Name)
		}
	}
	if env["REGCACHE_CONFIG"] == "" {
		t.Fatal("the container's REGCACHE_CONFIG is not set")
	}
	cfg, err := config.Load(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		yml, _ := os.ReadFile(env["REGCACHE_CONFIG"])
		t.Fatalf("regcache refuses the chart's configuration: %v\n%s", err, yml)
	}
	if len(cfg.Warnings) > 0 {
		t.Errorf("the chart's configuration warns: %q", cfg.Warnings)
	}
	return cfg
}

// selects reports whether every label of sel is in labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestChartLoadBalancer: for CI VMs outside the cluster, a LoadBalancer
// of the registry port only, with the client's address kept (Local) and
// the load balancer's source ranges, and NOTES that say how a VM reaches it.
func TestChartLoadBalancer(t *testing.T) {
	t.Parallel()
	ch := loadChart(t)
	o := render(t, ch, `
service: {type: LoadBalancer, externalTrafficPolicy: Local, loadBalancerSourceRanges: [10.20.0.0/16, 192.0.2.0/24]}
networkPolicy: {allowCIDRs: [10.20.0.0/16]}
`)
	o.check(t, ch)
	svc := o.services["mirror-regcache"]
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal ||
		!slices.Equal(svc.Spec.LoadBalancerSourceRanges, []string{"10.20.0.0/16", "192.0.2.0/24"}) || len(svc.Spec.Ports) != 1 {
		t.Errorf("load balancer service %+v", svc.Spec)
	}
	for _, want := range []string{
		"MIRROR_IP=$(kubectl -n ci get service mirror-regcache -o jsonpath='{.status.loadBalancer.ingress[0].ip}')",
		"sudo regcache client docker enable --mirror http://$MIRROR_IP:5000",
		"admits 10.20.0.0/16, 192.0.2.0/24",
		"mirror-regcache-admin (ClusterIP) only",
	} {
		if !strings.Contains(o.notes, want) {
			t.Errorf("NOTES.txt does not say %q:\n%s", want, o.notes)
		}
	}
	if strings.Contains(o.notes, "nodes' addresses") {
		t.Errorf("NOTES.txt warns of node addresses with externalTrafficPolicy Local:\n%s", o.notes)
	}

	// Cluster (and the default) hides the client's address: the NOTES say so.
	o = render(t, ch, "service: {type: LoadBalancer}")
	o.check(t, ch)
	if svc := o.services["mirror-regcache"]; svc.Spec.ExternalTrafficPolicy != "" || svc.Spec.LoadBalancerSourceRanges != nil {
		t.Errorf("load balancer service with defaults %+v", svc.Spec)
	}
	if !strings.Contains(o.notes, "nodes' addresses") || !strings.Contains(o.notes, "admits any address") {
		t.Errorf("NOTES.txt:\n%s", o.notes)
	}
}

// TestChartRefusesUnknownValues: values.schema.json refuses a misspelt
// key, so it fails the install instead of being ignored.
func TestChartRefusesUnknownValues(t *testing.T) {
	t.Parallel()
	ch := loadChart(t)
	for _, vals := range []string{"config: {freshnes: 5m}", "networkPolicy: {allowCidrs: [10.0.0.0/8]}", "config: {access: {private: everyone}}",
		"service: {externalTrafficPolicy: local}", "service: {loadBalancerSourceRanges: [10.20.0.0]}", "service: {loadBalancerSourceRanges: 10.20.0.0/16}",
		"adminToken: {value: short}"} {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(vals), &m); err != nil {
			t.Fatal(err)
		}
		if _, err := util.ToRenderValues(ch, m, common.ReleaseOptions{Name: "mirror", Namespace: "ci"}, nil); err == nil {
			t.Errorf("values %s accepted", vals)
		}
	}
}

// TestImageTagStory: one tag everywhere. `make image` with no VERSION
// tags regcache:<the chart's appVersion> (and nothing else, no :latest
// that a node could not pull), the chart's default image is that tag, and
// docs/quickstart.md builds and runs that same tag.
func TestImageTagStory(t *testing.T) {
	t.Parallel()
	makeBin := testenv.RequireTool(t, "make")
	ch := loadChart(t)
	tag := "regcache:" + ch.Metadata.AppVersion
	root := filepath.Join("..", "..", "..")
	out, err := exec.Command(makeBin, "-n", "-C", root, "image").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n image: %v\n%s", err, out)
	}
	var tags []string
	fields := strings.Fields(string(out))
	for i, f := range fields {
		if f == "-t" && i+1 < len(fields) {
			tags = append(tags, fields[i+1])
		}
	}
	if !slices.Equal(tags, []string{tag}) {
		t.Errorf("make image tags %q, want only %s:\n%s", tags, tag, out)
	}
	if !strings.Contains(string(out), "cli.version="+ch.Metadata.AppVersion+" ") {
		t.Errorf("make image does not stamp version %s:\n%s", ch.Metadata.AppVersion, out)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "quickstart.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"make image VERSION=" + ch.Metadata.AppVersion + "\n", "  " + tag + "\n"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/quickstart.md does not say %q", strings.TrimSpace(want))
		}
	}
	o := render(t, ch, "")
	if img := o.statefulSets["mirror-regcache"].Spec.Template.Spec.Containers[0].Image; img != tag {
		t.Errorf("the chart's default image %s, want %s", img, tag)
	}
}
