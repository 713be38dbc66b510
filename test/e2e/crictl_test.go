package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// TestCrictl drives crid with the real crictl through every command a node
// operator uses, against a pod whose image comes through a mirror and whose
// IP comes from the bridge network.
func TestCrictl(t *testing.T) {
	crictl := os.Getenv("CRICTL")
	if crictl == "" {
		var err error
		if crictl, err = exec.LookPath("crictl"); err != nil {
			t.Fatal("crictl not found: set CRICTL (scripts/test.sh builds it)")
		}
	}
	endpoint := "unix://" + h.socket
	var cfgFile string
	run := func(args ...string) string {
		t.Helper()
		full := append([]string{"--config", cfgFile, "--runtime-endpoint", endpoint, "--image-endpoint", endpoint, "--timeout", "60s"}, args...)
		cmd := exec.Command(crictl, full...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("crictl %s: %v\n%s%s\ncrid log:\n%s", strings.Join(args, " "), err, out, stderr.String(), h.logTail())
		}
		return strings.TrimSpace(string(out))
	}
	dir := t.TempDir()
	cfgFile = filepath.Join(dir, "crictl.yaml")
	if err := os.WriteFile(cfgFile, []byte("runtime-endpoint: "+endpoint+"\nimage-endpoint: "+endpoint+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(name string, v any) string {
		b, _ := json.Marshal(v)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	uid := randHex(6)
	podJSON := write("pod.json", map[string]any{
		"metadata":      map[string]any{"name": "crictl-pod", "namespace": "e2e", "uid": uid},
		"log_directory": filepath.Join(dir, "logs"),
		"linux":         map[string]any{},
	})
	ctrJSON := write("ctr.json", map[string]any{
		"metadata": map[string]any{"name": "web"},
		"image":    map[string]any{"image": busybox},
		"command":  []string{"sh", "-c", "echo from-crictl; exec sleep 1000"},
		"log_path": "web.log",
	})

	if out := run("version"); !strings.Contains(out, "RuntimeName:  crid") {
		t.Errorf("version: %s", out)
	}
	if out := run("info"); !strings.Contains(out, `"NetworkReady"`) {
		t.Errorf("info: %s", out)
	}
	run("pull", busybox)
	if out := run("images"); !strings.Contains(out, "registry.k8s.io/e2e-test-images/busybox") {
		t.Errorf("images: %s", out)
	}
	if out := run("inspecti", busybox); !strings.Contains(out, "repoDigests") {
		t.Errorf("inspecti: %s", out)
	}
	if out := run("imagefsinfo"); !strings.Contains(out, "usedBytes") {
		t.Errorf("imagefsinfo: %s", out)
	}
	pod := run("runp", podJSON)
	if out := run("pods", "--id", pod); !strings.Contains(out, "Ready") {
		t.Errorf("pods: %s", out)
	}
	var inspectp struct {
		Status struct {
			Network struct{ IP string } `json:"network"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(run("inspectp", pod)), &inspectp); err != nil || !strings.HasPrefix(inspectp.Status.Network.IP, strings.TrimSuffix(podSubnet, "0/24")) {
		t.Errorf("inspectp: IP %q (%v)", inspectp.Status.Network.IP, err)
	}
	ctr := run("create", pod, ctrJSON, podJSON)
	run("start", ctr)
	if out := run("ps", "--id", ctr); !strings.Contains(out, "Running") {
		t.Errorf("ps: %s", out)
	}
	if out := run("inspect", ctr); !strings.Contains(out, `"CONTAINER_RUNNING"`) {
		t.Errorf("inspect: %s", out)
	}
	var logs string
	for i := 0; i < 40; i++ {
		if logs = run("logs", ctr); strings.Contains(logs, "from-crictl") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs, "from-crictl") {
		t.Errorf("logs: %q", logs)
	}
	if out := run("exec", "-s", ctr, "echo", "exec-ok"); out != "exec-ok" {
		t.Errorf("exec -s: %q", out)
	}
	if out := run("stats", "--id", ctr); !strings.Contains(out, ctr[:13]) {
		t.Errorf("stats: %s", out)
	}
	run("stop", ctr)
	if out := run("ps", "-a", "--id", ctr); !strings.Contains(out, "Exited") {
		t.Errorf("ps after stop: %s", out)
	}
	run("rm", ctr)
	run("stopp", pod)
	run("rmp", pod)
	if out := run("pods", "-q"); strings.Contains(out, pod) {
		t.Errorf("pod still listed: %s", out)
	}
	// rmi of an image no container uses.
	other := "gcr.io/k8s-staging-cri-tools/test-image-tags:1"
	run("pull", other)
	run("rmi", other)
	if out := run("images", "-q"); strings.Contains(out, "test-image-tags") {
		t.Errorf("image still listed after rmi: %s", out)
	}
	assertNoLeftovers(t, pod, ctr)
}
