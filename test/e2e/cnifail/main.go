// Command cnifail is a chained CNI plugin for crid's end-to-end tests: it
// fails ADD for pods whose name starts with "cnifail", takes 3 seconds over
// ADD for pods whose name starts with "cnislow", and passes the previous
// result through, so tests can check that crid rolls back a pod whose
// network setup failed half-way, and that a pod slower than its caller's
// deadline is handed to the retry.
//
// A pod named "cnifault-<command>-<action>-..." (command add, del or
// check; action error, hang or slow) meets the action at its first
// invocation of that command only, so that kubelet's retry converges: error
// fails with a CNI error, hang blocks until the plugin is killed, slow
// takes a second. Each such invocation leaves its pid in
// <pod>.<command>.pids beside the plugin.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	stdin, _ := io.ReadAll(os.Stdin)
	injectFault()
	switch os.Getenv("CNI_COMMAND") {
	case "VERSION":
		fmt.Print(`{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}`)
	case "ADD":
		if strings.Contains(os.Getenv("CNI_ARGS"), "K8S_POD_NAME=cnifail") {
			fmt.Print(`{"cniVersion":"1.0.0","code":999,"msg":"failpoint: ADD refused for this pod"}`)
			os.Exit(1)
		}
		if name, ok := podName(); ok && strings.HasPrefix(name, "cnislow") {
			// Each ADD leaves a line beside the plugin, so that tests can
			// count how often the pod's network was set up.
			if exe, err := os.Executable(); err == nil {
				if f, err := os.OpenFile(filepath.Join(filepath.Dir(exe), name+".adds"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
					fmt.Fprintln(f, os.Getenv("CNI_CONTAINERID"))
					f.Close()
				}
			}
			time.Sleep(3 * time.Second)
		}
		var conf struct {
			PrevResult json.RawMessage `json:"prevResult"`
		}
		if err := json.Unmarshal(stdin, &conf); err != nil || conf.PrevResult == nil {
			fmt.Printf(`{"cniVersion":"1.0.0","code":100,"msg":"no prevResult: %v"}`, err)
			os.Exit(1)
		}
		os.Stdout.Write(conf.PrevResult)
	default: // DEL, CHECK, GC, STATUS: nothing to undo
	}
}

// podName is K8S_POD_NAME from CNI_ARGS.
func podName() (string, bool) {
	for _, kv := range strings.Split(os.Getenv("CNI_ARGS"), ";") {
		if v, ok := strings.CutPrefix(kv, "K8S_POD_NAME="); ok {
			return v, true
		}
	}
	return "", false
}

// injectFault carries out the fault a "cnifault-<command>-<action>-" pod
// name asks for, at the first invocation of the command for the pod.
func injectFault() {
	name, ok := podName()
	if !ok || !strings.HasPrefix(name, "cnifault-") {
		return
	}
	parts := strings.SplitN(name, "-", 4)
	cmd := strings.ToUpper(os.Getenv("CNI_COMMAND"))
	if len(parts) < 3 || strings.ToUpper(parts[1]) != cmd {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Printf(`{"cniVersion":"1.0.0","code":100,"msg":"cnifail: %v"}`, err)
		os.Exit(1)
	}
	marker := filepath.Join(filepath.Dir(exe), name+"."+parts[1]+".pids")
	f, err := os.OpenFile(marker, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Printf(`{"cniVersion":"1.0.0","code":100,"msg":"cnifail: %v"}`, err)
		os.Exit(1)
	}
	st, _ := f.Stat()
	fmt.Fprintln(f, os.Getpid())
	f.Close()
	if st != nil && st.Size() > 0 {
		return // not the first invocation: behave
	}
	switch parts[2] {
	case "error":
		fmt.Printf(`{"cniVersion":"1.0.0","code":999,"msg":"failpoint: %s refused once for this pod"}`, cmd)
		os.Exit(1)
	case "hang":
		for {
			time.Sleep(time.Hour)
		}
	case "slow":
		time.Sleep(time.Second)
	}
}
