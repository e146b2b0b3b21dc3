// Command helmdeck-session walks one HelmdeckSession through helmdeck's session runtime with
// the client-go dynamic client: provision, wait Ready, read the endpoints, renew, extend the
// lifetime, terminate. Each step is one request to the Kubernetes API (docs/helmdeck.md).
//
//	go run . -namespace demo -name research -family browser
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
)

// sessions is the HelmdeckSession API: group helmdeck.dev, version v1alpha1.
var sessions = schema.GroupVersionResource{
	Group: "helmdeck.dev", Version: "v1alpha1", Resource: "helmdecksessions",
}

// extension is how much later than its current end the example asks the session to expire.
const extension = 30 * time.Minute

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
	namespace := flag.String("namespace", "", "namespace of the session (default: the kubeconfig context's)")
	name := flag.String("name", "helmdeck-example", "name of the HelmdeckSession")
	family := flag.String("family", "browser", "sidecar family: browser, python, node or vision")
	timeout := flag.Duration("timeout", 2*time.Minute, "how long to wait for the session to be Ready")
	keep := flag.Bool("keep", false, "leave the session running instead of deleting it at the end")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *kubeconfig, *namespace, *name, *family, *timeout, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "helmdeck-session:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig, namespace, name, family string, timeout time.Duration, keep bool) error {
	// The usual kubeconfig rules, as kubectl applies them; a flag wins over the context.
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	config, err := loader.ClientConfig()
	if err != nil {
		return err
	}
	if namespace == "" {
		if namespace, _, err = loader.Namespace(); err != nil {
			return err
		}
	}
	dyn, err := dynamic.NewForConfig(config)
	if err != nil {
		return err
	}
	client := dyn.Resource(sessions).Namespace(namespace)

	// Provision: create the session. Without spec.ports it gets its family's default ports
	// (browser: cdp 9222 and mcp 8931). It expires an hour after creation and is suspended
	// after 15 minutes without a renewal.
	session := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "helmdeck.dev/v1alpha1",
		"kind":       "HelmdeckSession",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"family":   family,
			"lifetime": map[string]any{"ttl": "1h", "idleTimeout": "15m", "onIdle": "Suspend"},
		},
	}}
	if _, err := client.Create(ctx, session, metav1.CreateOptions{}); err != nil {
		return err
	}
	err = use(ctx, client, name, timeout)
	if !keep {
		// Terminate: the session's finalizer deletes the sandbox on the gateway.
		if derr := client.Delete(context.WithoutCancel(ctx), name, metav1.DeleteOptions{}); derr != nil {
			return errors.Join(err, derr)
		}
		fmt.Printf("deleted: %s\n", name)
	}
	return err
}

// use waits for the session, prints its sandbox and endpoints, renews it and extends it.
func use(ctx context.Context, client dynamic.ResourceInterface, name string, timeout time.Duration) error {
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	session, err := waitReady(waitCtx, client, name)
	if err != nil {
		return err
	}

	// Endpoints: status.endpoints maps each exposed port's name to the URL the gateway
	// returned. The sandbox name is what OpenShell's CLI wants to read the sandbox's logs.
	sandbox, _, _ := unstructured.NestedString(session.Object, "status", "sandbox", "name")
	fmt.Printf("sandbox: %s\n", sandbox)
	endpoints, _, _ := unstructured.NestedStringMap(session.Object, "status", "endpoints")
	for _, port := range slices.Sorted(maps.Keys(endpoints)) {
		fmt.Printf("%s endpoint: %s\n", port, endpoints[port])
	}

	// Renew: "in use now" resets the idle clock (and resumes a session suspended as idle).
	now := time.Now().UTC().Format(time.RFC3339)
	if err := patchLease(ctx, client, name, map[string]string{"renewTime": now}); err != nil {
		return err
	}
	fmt.Printf("renewed: %s\n", now)

	// Extend: ask for a later end than status.expiresAt. The operator grants it (expiresAt
	// moves, condition LifetimeExtended True) unless it passes the maximum lifetime.
	end := time.Now().Add(extension)
	if expires, _, _ := unstructured.NestedString(session.Object, "status", "expiresAt"); expires != "" {
		if at, err := time.Parse(time.RFC3339, expires); err == nil {
			end = at.Add(extension)
		}
	}
	expireTime := end.UTC().Format(time.RFC3339)
	if err := patchLease(ctx, client, name, map[string]string{"expireTime": expireTime}); err != nil {
		return err
	}
	fmt.Printf("extension requested: %s\n", expireTime)
	return nil
}

// patchLease merge-patches status.lease through the status subresource: one PATCH that
// needs nothing but the verb patch on helmdecksessions/status.
func patchLease(ctx context.Context, client dynamic.ResourceInterface, name string, lease map[string]string) error {
	body, err := json.Marshal(map[string]any{"status": map[string]any{"lease": lease}})
	if err != nil {
		return err
	}
	_, err = client.Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{}, "status")
	return err
}

// waitReady returns the session once its Ready condition is True. It lists the session by
// name, then watches it from that list's resourceVersion; when the watch ends (the apiserver
// closes watches after a while, or answers 410 Gone to a resourceVersion too old) it lists
// again. The context's deadline bounds the whole wait.
func waitReady(ctx context.Context, client dynamic.ResourceInterface, name string) (*unstructured.Unstructured, error) {
	byName := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()}
	var last *unstructured.Unstructured // the latest state seen, to say why on a timeout
	for {
		list, err := client.List(ctx, byName)
		if err != nil {
			return nil, notReady(err, name, last)
		}
		for i := range list.Items {
			last = &list.Items[i]
			if done, err := ready(last); done || err != nil {
				return last, err
			}
		}
		opts := byName
		opts.ResourceVersion = list.GetResourceVersion()
		w, err := client.Watch(ctx, opts)
		if err != nil {
			return nil, notReady(err, name, last)
		}
		for event := range w.ResultChan() {
			if event.Type == watch.Error {
				break // list again
			}
			session, ok := event.Object.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			if event.Type == watch.Deleted {
				w.Stop()
				return nil, fmt.Errorf("session %s was deleted while waiting for it", name)
			}
			last = session
			if done, err := ready(session); done || err != nil {
				w.Stop()
				return session, err
			}
		}
		w.Stop()
	}
}

// ready reports whether the session's Ready condition is True; a Failed session is an error.
func ready(session *unstructured.Unstructured) (bool, error) {
	status, reason, message := condition(session, "Ready")
	if phase, _, _ := unstructured.NestedString(session.Object, "status", "phase"); phase == "Failed" {
		return false, fmt.Errorf("session %s failed: %s: %s", session.GetName(), reason, message)
	}
	return status == "True", nil
}

// notReady says what the session's Ready condition was when waiting for it timed out.
func notReady(err error, name string, last *unstructured.Unstructured) error {
	if !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	why := "no Ready condition yet: is the operator running?"
	if last != nil {
		if status, reason, message := condition(last, "Ready"); status != "" {
			why = fmt.Sprintf("Ready %s, %s: %s", status, reason, message)
		}
	}
	return fmt.Errorf("session %s not Ready in time (%s)", name, why)
}

// condition returns status, reason and message of the session's condition of that type.
func condition(session *unstructured.Unstructured, kind string) (status, reason, message string) {
	conditions, _, _ := unstructured.NestedSlice(session.Object, "status", "conditions")
	for _, c := range conditions {
		if c, ok := c.(map[string]any); ok && c["type"] == kind {
			status, _ = c["status"].(string)
			reason, _ = c["reason"].(string)
			message, _ = c["message"].(string)
		}
	}
	return status, reason, message
}
