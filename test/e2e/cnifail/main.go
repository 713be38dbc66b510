// Command cnifail is a chained CNI plugin for crid's end-to-end tests: it
// fails ADD for pods whose name contains "cnifail" and passes the previous
// result through for everyone else, so tests can check that crid rolls
// back a pod whose network setup failed half-way.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	stdin, _ := io.ReadAll(os.Stdin)
	switch os.Getenv("CNI_COMMAND") {
	case "VERSION":
		fmt.Print(`{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}`)
	case "ADD":
		if strings.Contains(os.Getenv("CNI_ARGS"), "K8S_POD_NAME=cnifail") {
			fmt.Print(`{"cniVersion":"1.0.0","code":999,"msg":"failpoint: ADD refused for this pod"}`)
			os.Exit(1)
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
