// Command declmove moves whole top-level declarations of one Go package between
// its files, as a move list says, so that a reorganisation of files can be
// re-applied mechanically to a tree whose function bodies have changed since
// the list was written.
//
// Usage:
//
//	go run ./internal/tools/declmove [-n] [-strict] -list FILE DIR
//	go run ./internal/tools/declmove -dump DIR    # a list that keeps everything where it is
//
// The list has one instruction a line; blank lines and lines starting with #
// are ignored:
//
//	Func               -> target.go   a function
//	Type.Method        -> target.go   a method (pointer or value receiver)
//	Type               -> target.go   a type declaration
//	const Name         -> target.go   a const declaration; a grouped one is named by its first name
//	var Name           -> target.go   likewise for var
//	file target.go: one paragraph     the file comment written when target.go is created
//	rename a.go -> b.go               rename a file (tests too) if a.go exists and b.go does not
//
// A declaration moves with its doc comment, byte for byte. A declaration
// already in its target stays where it is, so running the tool twice changes
// nothing the second time. A listed declaration that does not exist is an
// error (exit 1, nothing written). Declarations the list does not place are
// printed as "unplaced" (an error with -strict). Only non-test files are
// moved by declaration; imports of the changed files are recomputed from the
// imports of the files their declarations came from, and every changed file
// is gofmt-ed. init functions and declarations of _ (interface assertions)
// are not listed and stay in their file. A file left with no declarations is removed. Renaming
// identifiers is not this tool's job.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

type decl struct {
	key   string
	file  string
	start int // byte offsets in the file's source, doc comment included
	end   int
	used  map[string]bool // import names the declaration refers to
}

type srcFile struct {
	name    string
	src     []byte
	pkg     string
	imports map[string]string // local name -> path (blank and dot imports excluded)
	named   map[string]bool   // local names written explicitly in the import
	blank   []string          // blank/dot import lines kept verbatim
	decls   []*decl
	header  int // end of the package clause
	cuts    [][2]int
	adds    []*decl
	changed bool
}

type move struct {
	key, target string
	line        int
}

func main() {
	listPath := flag.String("list", "", "move list file")
	dry := flag.Bool("n", false, "print what would move; write nothing")
	strict := flag.Bool("strict", false, "fail if a declaration is not placed by the list")
	dump := flag.Bool("dump", false, "print every declaration as a move list line placing it where it is, and exit")
	flag.Parse()
	if *dump && flag.NArg() == 1 {
		if err := dumpList(flag.Arg(0)); err != nil {
			fmt.Fprintln(os.Stderr, "declmove:", err)
			os.Exit(1)
		}
		return
	}
	if *listPath == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: declmove [-n] [-strict] -list FILE DIR")
		os.Exit(2)
	}
	if err := run(*listPath, flag.Arg(0), *dry, *strict); err != nil {
		fmt.Fprintln(os.Stderr, "declmove:", err)
		os.Exit(1)
	}
}

var (
	moveRe   = regexp.MustCompile(`^((?:const |var |type )?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*->\s*([A-Za-z0-9_]+\.go)$`)
	renameRe = regexp.MustCompile(`^rename\s+([A-Za-z0-9_]+\.go)\s*->\s*([A-Za-z0-9_]+\.go)$`)
	fileRe   = regexp.MustCompile(`^file\s+([A-Za-z0-9_]+\.go):\s*(.+)$`)
)

func run(listPath, dir string, dry, strict bool) error {
	moves, renames, comments, err := readList(listPath)
	if err != nil {
		return err
	}
	for _, r := range renames {
		from, to := filepath.Join(dir, r[0]), filepath.Join(dir, r[1])
		if _, err := os.Stat(from); err != nil {
			continue
		}
		if _, err := os.Stat(to); err == nil {
			return fmt.Errorf("rename %s -> %s: both exist", r[0], r[1])
		}
		fmt.Printf("rename %s -> %s\n", r[0], r[1])
		if !dry {
			if err := os.Rename(from, to); err != nil {
				return err
			}
		}
	}
	files, byKey, err := load(dir)
	if err != nil {
		return err
	}
	var missing []string
	placed := map[string]bool{}
	for _, m := range moves {
		d, ok := byKey[m.key]
		if !ok {
			missing = append(missing, fmt.Sprintf("%s:%d: %s: no such declaration", listPath, m.line, m.key))
			continue
		}
		if placed[m.key] {
			return fmt.Errorf("%s:%d: %s placed twice", listPath, m.line, m.key)
		}
		placed[m.key] = true
		if d.file == m.target {
			continue
		}
		fmt.Printf("move %-40s %s -> %s\n", m.key, d.file, m.target)
		from := files[d.file]
		from.cuts = append(from.cuts, [2]int{d.start, d.end})
		from.changed = true
		to := files[m.target]
		if to == nil {
			to = &srcFile{name: m.target, imports: map[string]string{}, pkg: from.pkg}
			files[m.target] = to
		}
		to.adds = append(to.adds, d)
		to.changed = true
	}
	if len(missing) > 0 {
		return fmt.Errorf("listed declarations missing (nothing written):\n  %s", strings.Join(missing, "\n  "))
	}
	var unplaced []string
	for k, d := range byKey {
		if !placed[k] {
			unplaced = append(unplaced, fmt.Sprintf("%s (in %s)", k, d.file))
		}
	}
	sort.Strings(unplaced)
	for _, u := range unplaced {
		fmt.Println("unplaced:", u)
	}
	if strict && len(unplaced) > 0 {
		return fmt.Errorf("%d declarations not placed by the list", len(unplaced))
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	out := map[string][]byte{}
	for _, n := range names {
		f := files[n]
		if !f.changed {
			continue
		}
		b, err := rebuild(f, files, comments[n])
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		out[n] = b
	}
	if dry {
		return nil
	}
	for _, n := range names {
		b, ok := out[n]
		if !ok {
			continue
		}
		p := filepath.Join(dir, n)
		if b == nil {
			fmt.Println("remove", n)
			if err := os.Remove(p); err != nil {
				return err
			}
			continue
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func dumpList(dir string) error {
	files, _, err := load(dir)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("\n# %s\n", n)
		for _, d := range files[n].decls {
			if d.key == "init" || d.key == "var _" || d.key == "const _" {
				continue
			}
			fmt.Printf("%-44s -> %s\n", d.key, n)
		}
	}
	return nil
}

func readList(path string) (moves []move, renames [][2]string, comments map[string]string, err error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, err
	}
	defer fh.Close()
	comments = map[string]string{}
	sc := bufio.NewScanner(fh)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if m := renameRe.FindStringSubmatch(line); m != nil {
			renames = append(renames, [2]string{m[1], m[2]})
			continue
		}
		if m := fileRe.FindStringSubmatch(line); m != nil {
			comments[m[1]] = m[2]
			continue
		}
		if m := moveRe.FindStringSubmatch(line); m != nil {
			key := strings.TrimPrefix(m[1], "type ")
			moves = append(moves, move{key: key, target: m[2], line: n})
			continue
		}
		return nil, nil, nil, fmt.Errorf("%s:%d: cannot read %q", path, n, line)
	}
	return moves, renames, comments, sc.Err()
}

func load(dir string) (map[string]*srcFile, map[string]*decl, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, nil, err
	}
	files := map[string]*srcFile{}
	byKey := map[string]*decl{}
	fset := token.NewFileSet()
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		af, err := parser.ParseFile(fset, p, src, parser.ParseComments)
		if err != nil {
			return nil, nil, err
		}
		tf := fset.File(af.Pos())
		off := func(pos token.Pos) int { return tf.Offset(pos) }
		f := &srcFile{name: filepath.Base(p), src: src, pkg: af.Name.Name, imports: map[string]string{}, named: map[string]bool{}, header: off(af.Name.End())}
		files[f.name] = f
		for _, is := range af.Imports {
			path, _ := strconv.Unquote(is.Path.Value)
			name := importName(path)
			if is.Name != nil {
				name = is.Name.Name
			}
			if name == "_" || name == "." {
				f.blank = append(f.blank, string(src[off(is.Pos()):off(is.End())]))
				continue
			}
			f.imports[name] = path
			f.named[name] = is.Name != nil
		}
		for _, gd := range af.Decls {
			var key string
			var docPos token.Pos
			switch d := gd.(type) {
			case *ast.FuncDecl:
				key = d.Name.Name
				if d.Recv != nil && len(d.Recv.List) == 1 {
					key = recvName(d.Recv.List[0].Type) + "." + key
				}
				if d.Doc != nil {
					docPos = d.Doc.Pos()
				}
			case *ast.GenDecl:
				if d.Tok == token.IMPORT {
					continue
				}
				key = genKey(d)
				if d.Doc != nil {
					docPos = d.Doc.Pos()
				}
			}
			start := gd.Pos()
			if docPos.IsValid() {
				start = docPos
			}
			e := off(gd.End())
			// Keep a comment trailing the declaration on its last line.
			if i := bytes.IndexByte(src[e:], '\n'); i >= 0 {
				if rest := bytes.TrimSpace(src[e : e+i]); len(rest) == 0 || bytes.HasPrefix(rest, []byte("//")) {
					e += i
				}
			}
			dd := &decl{key: key, file: f.name, start: off(start), end: e, used: usedImports(gd, f.imports)}
			f.decls = append(f.decls, dd)
			if key == "init" || key == "var _" || key == "const _" {
				continue // anonymous: stays in its file, never listed
			}
			if prev, ok := byKey[key]; ok {
				return nil, nil, fmt.Errorf("%s declared in %s and %s", key, prev.file, f.name)
			}
			byKey[key] = dd
		}
	}
	return files, byKey, nil
}

func genKey(d *ast.GenDecl) string {
	if len(d.Specs) == 0 {
		return d.Tok.String() + " ?"
	}
	switch s := d.Specs[0].(type) {
	case *ast.TypeSpec:
		return s.Name.Name
	case *ast.ValueSpec:
		return d.Tok.String() + " " + s.Names[0].Name
	}
	return "?"
}

func recvName(e ast.Expr) string {
	for {
		switch t := e.(type) {
		case *ast.StarExpr:
			e = t.X
		case *ast.ParenExpr:
			e = t.X
		case *ast.IndexExpr:
			e = t.X
		case *ast.IndexListExpr:
			e = t.X
		case *ast.Ident:
			return t.Name
		default:
			return "?"
		}
	}
}

var versionElem = regexp.MustCompile(`^v[0-9]+(\.[0-9]+)*$`)

// importName guesses a package's name from its path, as goimports does.
func importName(path string) string {
	els := strings.Split(path, "/")
	for i := len(els) - 1; i >= 0; i-- {
		if !versionElem.MatchString(els[i]) || i == 0 {
			n := strings.TrimPrefix(els[i], "go-")
			return strings.Map(func(r rune) rune {
				if r == '-' || r == '.' {
					return -1
				}
				return r
			}, n)
		}
	}
	return path
}

// usedImports lists the import names a declaration selects from: a selector
// whose left side is an identifier the parser could not resolve inside the file.
func usedImports(n ast.Node, imports map[string]string) map[string]bool {
	used := map[string]bool{}
	ast.Inspect(n, func(n ast.Node) bool {
		if se, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := se.X.(*ast.Ident); ok && id.Obj == nil {
				if _, ok := imports[id.Name]; ok {
					used[id.Name] = true
				}
			}
		}
		return true
	})
	return used
}

// rebuild returns the file's new text, or nil when it is left without declarations.
func rebuild(f *srcFile, files map[string]*srcFile, comment string) ([]byte, error) {
	cut := map[int]bool{}
	for _, c := range f.cuts {
		cut[c[0]] = true
	}
	var kept []*decl
	for _, d := range f.decls {
		if !cut[d.start] {
			kept = append(kept, d)
		}
	}
	all := append(append([]*decl{}, kept...), f.adds...)
	if len(all) == 0 {
		return nil, nil
	}
	// The imports the declarations need, resolved against the files they came from.
	need := map[string]string{}
	named := map[string]bool{}
	for _, d := range all {
		from := files[d.file].imports
		for name := range d.used {
			p := from[name]
			named[name] = named[name] || files[d.file].named[name]
			if q, ok := need[name]; ok && q != p {
				return nil, fmt.Errorf("import name %s means both %q and %q", name, p, q)
			}
			need[name] = p
		}
	}
	var std, other []string
	for name, p := range need {
		line := strconv.Quote(p)
		if named[name] || name != importName(p) {
			line = name + " " + line
		}
		if strings.Contains(strings.SplitN(p, "/", 2)[0], ".") {
			other = append(other, line)
		} else {
			std = append(std, line)
		}
	}
	for _, b := range f.blank {
		other = append(other, b)
	}
	sort.Strings(std)
	sort.Strings(other)

	var buf bytes.Buffer
	if f.src == nil {
		if comment != "" {
			buf.WriteString(wrapComment(comment))
			buf.WriteString("\n")
		}
		buf.WriteString("package " + f.pkg + "\n")
	} else {
		buf.Write(f.src[:f.header])
		buf.WriteString("\n")
	}
	writeImports(&buf, std, other)
	// The body of the old file after its imports, less what moved out.
	if f.src != nil {
		body := bodyStart(f)
		cuts := append([][2]int{}, f.cuts...)
		sort.Slice(cuts, func(i, j int) bool { return cuts[i][0] < cuts[j][0] })
		pos := body
		for _, c := range cuts {
			buf.Write(f.src[pos:c[0]])
			pos = c[1]
		}
		buf.Write(f.src[pos:])
	}
	for _, d := range f.adds {
		buf.WriteString("\n\n")
		buf.Write(files[d.file].src[d.start:d.end])
		buf.WriteString("\n")
	}
	out, err := format.Source(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("gofmt: %w\n%s", err, buf.Bytes())
	}
	return out, nil
}

// bodyStart is the offset just after the file's last import declaration
// (or its package clause when it has none).
func bodyStart(f *srcFile) int {
	fset := token.NewFileSet()
	af, err := parser.ParseFile(fset, f.name, f.src, parser.ImportsOnly|parser.ParseComments)
	if err != nil {
		return f.header
	}
	end := f.header
	for _, d := range af.Decls {
		if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.IMPORT {
			end = fset.File(af.Pos()).Offset(gd.End())
		}
	}
	return end
}

func writeImports(buf *bytes.Buffer, std, other []string) {
	n := len(std) + len(other)
	if n == 0 {
		return
	}
	if n == 1 {
		buf.WriteString("\nimport " + append(std, other...)[0] + "\n")
		return
	}
	buf.WriteString("\nimport (\n")
	for _, s := range std {
		buf.WriteString("\t" + s + "\n")
	}
	if len(std) > 0 && len(other) > 0 {
		buf.WriteString("\n")
	}
	for _, s := range other {
		buf.WriteString("\t" + s + "\n")
	}
	buf.WriteString(")\n")
}

func wrapComment(text string) string {
	var b strings.Builder
	line := "//"
	for _, w := range strings.Fields(text) {
		if len(line)+1+len(w) > 100 && line != "//" {
			b.WriteString(line + "\n")
			line = "//"
		}
		line += " " + w
	}
	b.WriteString(line + "\n")
	return b.String()
}
