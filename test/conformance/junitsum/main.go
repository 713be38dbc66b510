// Command junitsum summarises critest's ginkgo JUnit reports and checks
// them against the list of specs expected to pass.
//
//	junitsum [--expected FILE] [--out FILE] RUN=REPORT.xml ...
//
// For each run it prints passed/failed/skipped counts and the failing
// specs. It exits 1 when a spec listed in --expected did not pass in every
// run (or a report is missing), 0 otherwise; failures of specs not listed
// are reported but tolerated, so the list only ever grows.
package main

import (
	"bufio"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type junitReport struct {
	Suites []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Cases []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name    string        `xml:"name,attr"`
	Status  string        `xml:"status,attr"`
	Failure *junitMessage `xml:"failure"`
	Error   *junitMessage `xml:"error"`
	Skipped *junitMessage `xml:"skipped"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
}

// result is one run's outcome per spec name.
type result struct {
	name    string
	passed  map[string]bool
	failed  []string // specs and suite nodes (BeforeSuite...) that failed
	skipped int
	total   int
	status  map[string]string // every spec's status
}

// specName strips ginkgo's node-type prefix: "[It] [sig-node] X" -> "[sig-node] X".
func specName(n string) string { return strings.TrimSpace(strings.TrimPrefix(n, "[It]")) }

func caseStatus(c junitCase) string {
	if c.Status != "" {
		return c.Status
	}
	switch {
	case c.Failure != nil:
		return "failed"
	case c.Error != nil:
		return "panicked"
	case c.Skipped != nil:
		return "skipped"
	}
	return "passed"
}

func parseReport(run string, r io.Reader) (*result, error) {
	var rep junitReport
	if err := xml.NewDecoder(r).Decode(&rep); err != nil {
		return nil, fmt.Errorf("run %s: parse JUnit: %w", run, err)
	}
	res := &result{name: run, passed: map[string]bool{}, status: map[string]string{}}
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			isSpec := strings.HasPrefix(c.Name, "[It]")
			st := caseStatus(c)
			if isSpec {
				res.total++
				res.status[specName(c.Name)] = st
			}
			switch st {
			case "passed":
				if isSpec {
					res.passed[specName(c.Name)] = true
				}
			case "skipped", "pending":
				if isSpec {
					res.skipped++
				}
			default: // failed, panicked, interrupted, aborted, timedout
				res.failed = append(res.failed, specName(c.Name)+" ("+st+")")
			}
		}
	}
	sort.Strings(res.failed)
	return res, nil
}

func readExpected(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, specName(l))
	}
	return out, sc.Err()
}

// summarise writes the report and returns the expected specs that did not
// pass in every run.
func summarise(w io.Writer, results []*result, expected []string) []string {
	for _, r := range results {
		fmt.Fprintf(w, "run %s: %d specs, %d passed, %d failed, %d skipped\n",
			r.name, r.total, len(r.passed), len(r.failed), r.skipped)
		for _, f := range r.failed {
			fmt.Fprintf(w, "  FAIL %s\n", f)
		}
	}
	var missing []string
	for _, e := range expected {
		var notIn []string
		for _, r := range results {
			if !r.passed[e] {
				notIn = append(notIn, r.name)
			}
		}
		if len(notIn) > 0 {
			missing = append(missing, fmt.Sprintf("%s (did not pass in: %s)", e, strings.Join(notIn, ", ")))
		}
	}
	fmt.Fprintf(w, "expected passes: %d listed, %d regressed\n", len(expected), len(missing))
	for _, m := range missing {
		fmt.Fprintf(w, "  REGRESSION %s\n", m)
	}
	return missing
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "junitsum:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("junitsum", flag.ContinueOnError)
	expectedPath := fs.String("expected", "", "file listing spec names that must pass (one per line, # comments)")
	outPath := fs.String("out", "", "also write the summary to this file")
	mdPath := fs.String("markdown", "", "write a markdown table of every spec and its result per run to this file")
	reasonsPath := fs.String("reasons", "", "file of `spec name<TAB>reason` lines explaining specs that do not pass (for --markdown)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("usage: junitsum [--expected FILE] [--out FILE] [--markdown FILE --reasons FILE] RUN=REPORT.xml")
	}
	expected, err := readExpected(*expectedPath)
	if err != nil {
		return fmt.Errorf("expected passes: %w", err)
	}
	var results []*result
	var problems []string
	for _, a := range fs.Args() {
		runName, path, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("argument %q: want RUN=REPORT.xml", a)
		}
		f, err := os.Open(path)
		if err != nil {
			problems = append(problems, fmt.Sprintf("run %s: no report: %v", runName, err))
			results = append(results, &result{name: runName, passed: map[string]bool{}})
			continue
		}
		r, err := parseReport(runName, f)
		f.Close()
		if err != nil {
			return err
		}
		results = append(results, r)
	}

	w := stdout
	var file *os.File
	if *outPath != "" {
		file, err = os.Create(*outPath)
		if err != nil {
			return err
		}
		defer file.Close()
		w = io.MultiWriter(stdout, file)
	}
	for _, p := range problems {
		fmt.Fprintln(w, p)
	}
	missing := summarise(w, results, expected)
	if *mdPath != "" {
		reasons, err := readReasons(*reasonsPath)
		if err != nil {
			return fmt.Errorf("reasons: %w", err)
		}
		if err := writeMarkdown(*mdPath, results, reasons); err != nil {
			return err
		}
	}
	if len(missing) > 0 || len(problems) > 0 {
		return fmt.Errorf("%d expected spec(s) did not pass, %d report problem(s)", len(missing), len(problems))
	}
	return nil
}

// readReasons reads "spec<TAB>reason" lines.
func readReasons(path string) (map[string]string, error) {
	out := map[string]string{}
	if path == "" {
		return out, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			continue
		}
		name, reason, ok := strings.Cut(l, "\t")
		if !ok {
			return nil, fmt.Errorf("line %q: want spec<TAB>reason", l)
		}
		out[specName(name)] = strings.TrimSpace(reason)
	}
	return out, nil
}

// writeMarkdown writes the counts per run and one table row per spec.
func writeMarkdown(path string, results []*result, reasons map[string]string) error {
	var b strings.Builder
	b.WriteString("| run | specs | passed | failed | skipped |\n|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d |\n", r.name, r.total, len(r.passed), len(r.failed), r.skipped)
	}
	names := map[string]bool{}
	for _, r := range results {
		for n := range r.status {
			names[n] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	b.WriteString("\n| spec |")
	for _, r := range results {
		fmt.Fprintf(&b, " %s |", r.name)
	}
	b.WriteString(" why not passing / what it would take |\n|---|")
	for range results {
		b.WriteString("---|")
	}
	b.WriteString("---|\n")
	for _, n := range sorted {
		fmt.Fprintf(&b, "| %s |", strings.ReplaceAll(n, "|", "\\|"))
		allPass := true
		for _, r := range results {
			st := r.status[n]
			if st == "" {
				st = "—"
			}
			if st != "passed" {
				allPass = false
			}
			fmt.Fprintf(&b, " %s |", st)
		}
		reason := reasons[n]
		if allPass {
			reason = ""
		} else if reason == "" {
			reason = "not yet explained"
		}
		fmt.Fprintf(&b, " %s |\n", reason)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
