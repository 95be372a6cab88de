// Package k8s tests deploy/k8s on a real cluster, the one KUBECONFIG
// names, as a user would run it: it builds the demo image from the
// Dockerfile, loads it into the cluster, applies deploy/k8s unchanged but
// for the image, and drives reloads, a ConfigMap update, a rollout
// restart and a pod deletion under load through the Service's ClusterIP.
//
//	deploy/k8s/node/up.sh                       # or any cluster
//	KUBECONFIG=/var/lib/tini-hot-node/admin.kubeconfig go test -tags k8s -count=1 -v -timeout 30m ./e2e/k8s
//
// The load runs inside the cluster, in a pod of the test's namespace
// (loader/), so that it reaches the Service's ClusterIP and the pods' IPs
// as clients do, on any cluster. Images reach the cluster through
// TINI_HOT_K8S_LOAD, a command given the podman images' names (default:
// deploy/k8s/node/load.sh; for kind, a script that saves each and runs
// `kind load image-archive`).
//
// TINI_HOT_K8S_BREAK=no-prestop (or probe-true) breaks the manifest on
// purpose after it is applied, to see the test fail.
//
// The test is behind the build tag k8s, so that `go test ./...` does not
// need a cluster.
package k8s
