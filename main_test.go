package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/imgate/imgate/internal/pgtest"
)

// TestMain runs the tests, then removes what the run built outside its
// tests' own temp dirs (the imgate binary of the process tests), keeping
// the tests' exit code, and stops the throwaway PostgreSQL of a run with
// IMGATE_TEST_STORE=postgres.
func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	if err := removeBinary(); err != nil {
		fmt.Fprintln(os.Stderr, "imgate tests: removing the built binary:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
