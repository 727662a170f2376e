package helm_test

import (
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

func TestStub(t *testing.T) {
	_ = monitoringv1.ServiceMonitor{}
	_ = appsv1.StatefulSet{}
	_ = corev1.Service{}
	_ = networkingv1.Ingress{}
	_ = yaml.Unmarshal
	_ = loader.Load
	_ = engine.Render
	_ = util.ToRenderValues
	_ = common.ReleaseOptions{}
}
