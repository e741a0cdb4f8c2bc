package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const srcA = `package p

import (
	"fmt"
	"strings"
)

// Hello greets.
func Hello() string { return fmt.Sprint("hi") } // trailing

// T is a type.
type T struct{}

// Up upper-cases.
func (T) Up(s string) string { return strings.ToUpper(s) }

const (
	one = 1
	two = 2
)
`

const srcB = `package p

// Bye says bye.
func Bye() string { return "bye" }
`

func write(t *testing.T, dir, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

func TestMoveIdempotent(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.go", srcA)
	write(t, dir, "b.go", srcB)
	list := filepath.Join(t.TempDir(), "p.moves")
	write(t, filepath.Dir(list), "p.moves", `
file c.go: The upper-casing room.
Hello -> b.go
T -> c.go
T.Up -> c.go
const one -> a.go
Bye -> b.go
`)
	if err := run(list, dir, false, true); err != nil {
		t.Fatal(err)
	}
	got := read(t, dir)
	if !strings.Contains(got["b.go"], "// Hello greets.\nfunc Hello() string { return fmt.Sprint(\"hi\") } // trailing") ||
		!strings.Contains(got["b.go"], `import "fmt"`) {
		t.Errorf("b.go lacks Hello with its comments and import:\n%s", got["b.go"])
	}
	if !strings.HasPrefix(got["c.go"], "// The upper-casing room.\n\npackage p\n") ||
		!strings.Contains(got["c.go"], `import "strings"`) || !strings.Contains(got["c.go"], "// Up upper-cases.") {
		t.Errorf("c.go:\n%s", got["c.go"])
	}
	if strings.Contains(got["a.go"], "import") || strings.Contains(got["a.go"], "Hello") {
		t.Errorf("a.go kept what moved out:\n%s", got["a.go"])
	}
	if err := run(list, dir, false, true); err != nil {
		t.Fatal(err)
	}
	again := read(t, dir)
	for name, text := range got {
		if again[name] != text {
			t.Errorf("second run changed %s:\n%s", name, again[name])
		}
	}
}

func TestMissingAndUnplaced(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.go", srcA)
	list := filepath.Join(t.TempDir(), "p.moves")
	write(t, filepath.Dir(list), "p.moves", "Gone -> a.go\n")
	err := run(list, dir, false, false)
	if err == nil || !strings.Contains(err.Error(), "Gone: no such declaration") {
		t.Errorf("missing declaration: err = %v", err)
	}
	write(t, filepath.Dir(list), "p.moves", "Hello -> a.go\n")
	if err := run(list, dir, false, true); err == nil || !strings.Contains(err.Error(), "not placed") {
		t.Errorf("unplaced with -strict: err = %v", err)
	}
	if got := read(t, dir)["a.go"]; got != srcA {
		t.Errorf("a failed run wrote a.go:\n%s", got)
	}
}
