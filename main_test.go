package main

import (
	"fmt"
	"os"
	"testing"
)

// TestMain runs the tests, then removes what the run built outside its
// tests' own temp dirs (the imgate binary of the process tests), keeping
// the tests' exit code.
func TestMain(m *testing.M) {
	code := m.Run()
	if err := removeBinary(); err != nil {
		fmt.Fprintln(os.Stderr, "imgate tests: removing the built binary:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
