package main

import (
	"log/slog"
	"strings"

	"github.com/crid-dev/crid/internal/core"
)

// logRuntimeHandlers says at start which runtime each handler runs, and
// warns loudly about a runtime with published container escapes: crid
// still starts (the operator chose that binary, and a node that refuses
// to come up after an upgrade of crid alone helps no one), but the
// warning names the CVEs and the way out, every time crid starts.
func logRuntimeHandlers(log *slog.Logger, infos []core.HandlerInfo) {
	for _, h := range infos {
		log.Info("runtime handler", "handler", h.Name, "path", h.Path, "version", h.Version, "direct_exec", h.DirectExec)
		for _, p := range h.Problems {
			log.Warn("runtime handler: "+p, "handler", h.Name, "path", h.Path)
		}
		if len(h.KnownEscapes) == 0 {
			continue
		}
		var cves, fixed []string
		for _, a := range h.KnownEscapes {
			cves = append(cves, a.CVEs...)
			fixed = append(fixed, strings.Join(a.CVEs, ",")+": "+strings.Join(a.Fixed, " "))
		}
		log.Warn("runtime handler's runtime has known container escapes: pods on it can break out to the host; "+
			"upgrade it (the default runc: scripts/build-runc.sh) or point the handler at a fixed one",
			"handler", h.Name, "path", h.Path, "version", h.Version,
			"cves", strings.Join(cves, ","), "fixed_in", strings.Join(fixed, "; "))
	}
}
