package main

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/imgate/imgate/codec"
)

// The users' copy of the protocol, and the contract it copies. The contract
// lives beside the repository; a fresh clone has only the copy.
var (
	protocolDoc      = filepath.Join("docs", "PROTOCOL.md")
	protocolContract = filepath.Join("..", "shared", "PROTOCOL.md")
)

// Headings of the two sections whose tables the tests read.
const (
	commandsHeading = "## 3. Commands"
	statusHeading   = "## 6. Status codes"
)

// PROTOCOL §6: every status code the codec can send is a row of the
// document's status table with the codec's message, byte for byte, and the
// table has no row the codec does not know.
func TestProtocolReference_StatusTableIsTheCodecs(t *testing.T) {
	rows := statusRows(t, readDoc(t, protocolDoc))
	for _, c := range codec.Codes() {
		msg, ok := rows[c]
		switch {
		case !ok:
			t.Errorf("%s §6: code %d (%q) is missing", protocolDoc, c, c.Text())
		case msg != c.Text():
			t.Errorf("%s §6: code %d says %q, the codec sends %q", protocolDoc, c, msg, c.Text())
		}
	}
	for c := range rows {
		if !c.Known() {
			t.Errorf("%s §6: code %d is not a status code of the codec", protocolDoc, c)
		}
	}
}

// PROTOCOL §3: the request column of the command table is exactly what the
// router routes, each row giving the command of its reply first; every other
// command the codec defines goes server → client only, and the document
// shows it as a reply or an event, never as a request.
func TestProtocolReference_CommandTableIsTheRouters(t *testing.T) {
	doc := readDoc(t, protocolDoc)
	table := commandRows(t, doc)
	routed := newTestServer(t).s.router.Commands()

	for cmd, reply := range routed {
		row, ok := table.requests[cmd]
		if !ok {
			t.Errorf("%s §3: cmd %d is routed but not listed", protocolDoc, cmd)
			continue
		}
		if len(row) == 0 || row[0] != reply {
			t.Errorf("%s §3: cmd %d lists replies %v, the router answers with %d", protocolDoc, cmd, row, reply)
		}
	}

	// Server → client: every command of the codec the router does not take,
	// and every reply the router sends.
	out := make(map[codec.Cmd]bool)
	for _, c := range codecCommands(t) {
		if _, ok := routed[c]; !ok {
			out[c] = true
		}
	}
	for _, reply := range routed {
		out[reply] = true
	}
	for cmd := range table.requests {
		if _, ok := routed[cmd]; ok {
			continue
		}
		if out[cmd] {
			t.Errorf("%s §3: command %d goes server → client but is listed as a request", protocolDoc, cmd)
		} else {
			t.Errorf("%s §3: cmd %d is listed but not routed (its requests are answered 10017)", protocolDoc, cmd)
		}
	}
	for c := range out {
		if !table.replies[c] && !mentionsCommand(doc, c) {
			t.Errorf("%s: server → client command %d is neither in §3's response column nor shown as \"command\":%d or \"command %d\"", protocolDoc, c, c, c)
		}
	}
}

// The users' copy states the contract: its command and status tables equal
// those of ../shared/PROTOCOL.md line for line, when that file is present.
func TestProtocolReference_TablesMatchContract(t *testing.T) {
	contract, err := os.ReadFile(protocolContract)
	if errors.Is(err, fs.ErrNotExist) {
		t.Logf("%s not found (a clone without the shared contract): tables not compared", protocolContract)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	doc := readDoc(t, protocolDoc)
	for _, heading := range []string{commandsHeading, statusHeading} {
		got := sectionTable(t, protocolDoc, doc, heading)
		want := sectionTable(t, protocolContract, string(contract), heading)
		for i := range max(len(got), len(want)) {
			var g, w string
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w {
				t.Errorf("%q table, row %d:\n%s: %s\n%s: %s", heading, i+1, protocolDoc, g, protocolContract, w)
				break
			}
		}
	}
}

func readDoc(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sectionTable returns the table lines (those starting with "|") of the
// section under heading, up to the next "## " heading.
func sectionTable(t testing.TB, name, doc, heading string) []string {
	t.Helper()
	var lines []string
	in, found := false, false
	for line := range strings.Lines(doc) {
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, "## ") {
			in = strings.HasPrefix(line, heading)
			found = found || in
			continue
		}
		if in && strings.HasPrefix(line, "|") {
			lines = append(lines, line)
		}
	}
	if !found {
		t.Fatalf("%s: no section %q", name, heading)
	}
	if len(lines) < 3 {
		t.Fatalf("%s: section %q has no table", name, heading)
	}
	return lines
}

// cells splits a table line into its trimmed cells.
func cells(line string) []string {
	parts := strings.Split(strings.Trim(line, "|"), "|")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

var statusMsg = regexp.MustCompile("^`([^`]*)`")

// statusRows reads §6: code → the message in backquotes.
func statusRows(t testing.TB, doc string) map[codec.Code]string {
	t.Helper()
	rows := make(map[codec.Code]string)
	for _, line := range sectionTable(t, protocolDoc, doc, statusHeading)[2:] {
		cs := cells(line)
		code, err := strconv.ParseUint(cs[0], 10, 16)
		if err != nil || len(cs) < 2 {
			t.Fatalf("%s §6: row without a code: %s", protocolDoc, line)
		}
		m := statusMsg.FindStringSubmatch(strings.Join(cs[1:], "|"))
		if m == nil {
			t.Fatalf("%s §6: code %d has no message in backquotes: %s", protocolDoc, code, line)
		}
		if _, dup := rows[codec.Code(code)]; dup {
			t.Errorf("%s §6: code %d listed twice", protocolDoc, code)
		}
		rows[codec.Code(code)] = m[1]
	}
	return rows
}

type commandTable struct {
	requests map[codec.Cmd][]codec.Cmd // cmd → the commands of its response cell, in order
	replies  map[codec.Cmd]bool        // every command of the response column
}

var number = regexp.MustCompile(`\b\d+\b`)

// commandRows reads §3. A row whose cmd cell is not a number (the catch-all
// "other / unparsable") adds its response to replies only.
func commandRows(t testing.TB, doc string) commandTable {
	t.Helper()
	ct := commandTable{requests: make(map[codec.Cmd][]codec.Cmd), replies: make(map[codec.Cmd]bool)}
	for _, line := range sectionTable(t, protocolDoc, doc, commandsHeading)[2:] {
		cs := cells(line)
		if len(cs) < 3 {
			t.Fatalf("%s §3: row with fewer than 3 cells: %s", protocolDoc, line)
		}
		var resp []codec.Cmd
		for _, n := range number.FindAllString(cs[2], -1) {
			c, err := strconv.ParseUint(n, 10, 8)
			if err != nil {
				t.Fatalf("%s §3: response %q: %v", protocolDoc, n, err)
			}
			resp = append(resp, codec.Cmd(c))
			ct.replies[codec.Cmd(c)] = true
		}
		cmd, err := strconv.ParseUint(cs[0], 10, 8)
		if err != nil {
			continue
		}
		if _, dup := ct.requests[codec.Cmd(cmd)]; dup {
			t.Errorf("%s §3: cmd %d listed twice", protocolDoc, cmd)
		}
		ct.requests[codec.Cmd(cmd)] = resp
	}
	return ct
}

// mentionsCommand reports whether doc shows command c going to a client:
// "command":c in an example, or the words "command c".
func mentionsCommand(doc string, c codec.Cmd) bool {
	n := strconv.Itoa(int(c))
	return regexp.MustCompile(`("command":|command )` + n + `\b`).MatchString(doc)
}

// codecCommands returns the values of every codec.Cmd constant, read from
// the codec's source: the codec keeps no list of them, and a new constant
// must not escape the document.
func codecCommands(t testing.TB) []codec.Cmd {
	t.Helper()
	srcs, err := filepath.Glob(filepath.Join("codec", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var cmds []codec.Cmd
	for _, src := range srcs {
		if strings.HasSuffix(src, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, src, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Cmd" {
					continue
				}
				for i, name := range vs.Names {
					var lit *ast.BasicLit
					if i < len(vs.Values) {
						lit, _ = vs.Values[i].(*ast.BasicLit)
					}
					if lit == nil || lit.Kind != token.INT {
						t.Fatalf("codec.%s: not an integer literal", name.Name)
					}
					n, err := strconv.ParseUint(lit.Value, 0, 8)
					if err != nil {
						t.Fatalf("codec.%s: %v", name.Name, err)
					}
					cmds = append(cmds, codec.Cmd(n))
				}
			}
		}
	}
	if len(cmds) < 10 {
		t.Fatalf("codec: found only %d Cmd constants", len(cmds))
	}
	slices.Sort(cmds)
	return cmds
}
