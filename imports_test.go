package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// modulePath is this module's import path prefix.
const modulePath = "github.com/imgate/imgate"

// allowedImports is STYLE §1's table: for each package of this module, the
// packages of this module it may import. The root package (main, key "")
// may import anything. A package missing from the table may import nothing
// of ours and be imported by nothing but main until the table lists it.
var allowedImports = map[string][]string{
	"codec":   nil,
	"storage": nil,
	"router":  {"codec", "storage"},
	"engine":  {"codec", "router"},
	"httpapi": {"router", "storage"},
	"bench":   {"codec"},
	// cluster is the NATS bus: a router.Cluster over engine's Hub, which
	// it reaches through router's interfaces only.
	"cluster": {"router"},
}

// importEdge is one import of a package of this module by another, both
// named relative to the module ("" is the root).
type importEdge struct{ from, to string }

// topLevel maps a package to the row of the table that governs it: its
// first path element, so that engine/internal/x counts as engine.
func topLevel(rel string) string {
	top, _, _ := strings.Cut(rel, "/")
	return top
}

// relPath returns p relative to the module, and whether p is in it.
func relPath(p string) (string, bool) {
	if p == modulePath {
		return "", true
	}
	rel, ok := strings.CutPrefix(p, modulePath+"/")
	return rel, ok
}

// forbiddenImports returns every edge not allowed by allowedImports.
func forbiddenImports(edges []importEdge) []importEdge {
	var bad []importEdge
	for _, e := range edges {
		from, to := topLevel(e.from), topLevel(e.to)
		if e.from == "" || from == to {
			continue // main wires everything; a package may use its own subpackages
		}
		if !slices.Contains(allowedImports[from], to) {
			bad = append(bad, e)
		}
	}
	return bad
}

// parseGoList reads lines of `go list -f '{{.ImportPath}} {{join .Imports " "}}'`
// and returns the edges between packages of this module.
func parseGoList(out []byte) ([]importEdge, error) {
	var edges []importEdge
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		from, ok := relPath(fields[0])
		if !ok {
			continue
		}
		for _, imp := range fields[1:] {
			if to, ok := relPath(imp); ok {
				edges = append(edges, importEdge{from, to})
			}
		}
	}
	return edges, sc.Err()
}

func edgeName(e importEdge) string {
	name := func(rel string) string {
		if rel == "" {
			return "main"
		}
		return rel
	}
	return name(e.from) + " → " + name(e.to)
}

// TestImportDirections keeps STYLE §1's table honest: data flows engine →
// codec → router → storage, and no package imports against that flow.
// Only non-test imports count.
func TestImportDirections(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go tool not found: %v", err)
	}
	cmd := exec.Command(goTool, "list", "-e", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	edges, err := parseGoList(out)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range edges {
		seen[topLevel(e.from)], seen[topLevel(e.to)] = true, true
	}
	for _, pkg := range []string{"", "codec", "router", "engine", "storage"} {
		if !seen[pkg] {
			t.Fatalf("go list output names no edge of %q; is the check running in the module root?\n%s", pkg, out)
		}
	}
	for _, e := range forbiddenImports(edges) {
		t.Errorf("forbidden import %s (%s imports %s); STYLE §1 allows %s only %v",
			edgeName(e), pkgPath(e.from), pkgPath(e.to), topLevel(e.from), allowedImports[topLevel(e.from)])
	}
}

func pkgPath(rel string) string {
	if rel == "" {
		return modulePath
	}
	return modulePath + "/" + rel
}

// TestForbiddenImports checks the checker on made-up edges.
func TestForbiddenImports(t *testing.T) {
	tests := []struct {
		name    string
		edges   []importEdge
		wantBad []string
	}{
		{"the real layout", []importEdge{
			{"", "codec"}, {"", "engine"}, {"", "httpapi"}, {"", "router"}, {"", "storage"},
			{"router", "codec"}, {"router", "storage"},
			{"engine", "codec"}, {"engine", "router"},
			{"httpapi", "router"}, {"httpapi", "storage"},
			{"bench", "codec"},
		}, nil},
		{"codec imports storage", []importEdge{{"codec", "storage"}}, []string{"codec → storage"}},
		{"storage imports codec", []importEdge{{"storage", "codec"}}, []string{"storage → codec"}},
		{"router imports engine", []importEdge{{"router", "engine"}}, []string{"router → engine"}},
		{"engine imports storage", []importEdge{{"engine", "storage"}}, []string{"engine → storage"}},
		{"httpapi imports engine", []importEdge{{"httpapi", "engine"}}, []string{"httpapi → engine"}},
		{"bench imports router", []importEdge{{"bench", "router"}}, []string{"bench → router"}},
		{"anything imports main", []importEdge{{"codec", ""}}, []string{"codec → main"}},
		{"own subpackage", []importEdge{{"engine", "engine/internal/x"}, {"engine/internal/x", "codec"}}, nil},
		{"subpackage breaks the rule", []importEdge{{"codec/internal/x", "storage"}}, []string{"codec/internal/x → storage"}},
		{"into another's subpackage", []importEdge{{"codec", "storage/internal/x"}}, []string{"codec → storage/internal/x"}},
		{"package not in the table", []importEdge{{"util", "codec"}, {"codec", "util"}}, []string{"util → codec", "codec → util"}},
		{"mixed", []importEdge{{"router", "codec"}, {"codec", "router"}, {"engine", "router"}}, []string{"codec → router"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range forbiddenImports(tt.edges) {
				got = append(got, edgeName(e))
			}
			if !slices.Equal(got, tt.wantBad) {
				t.Fatalf("forbidden = %q, want %q", got, tt.wantBad)
			}
		})
	}
}

// TestParseGoList checks that edges come only from this module's lines and
// imports.
func TestParseGoList(t *testing.T) {
	out := []byte(strings.Join([]string{
		"fmt errors io",
		modulePath + "/codec encoding/json " + modulePath + "/storage",
		"github.com/imgate/imgatex/foo " + modulePath + "/codec",
		modulePath + " " + modulePath + "/engine fmt",
		"",
	}, "\n"))
	edges, err := parseGoList(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []importEdge{{"codec", "storage"}, {"", "engine"}}
	if !slices.Equal(edges, want) {
		t.Fatalf("edges = %v, want %v", edges, want)
	}
	if bad := forbiddenImports(edges); len(bad) != 1 || edgeName(bad[0]) != "codec → storage" {
		t.Fatalf("forbidden = %v, want codec → storage", bad)
	}
}
