package wfengine

import (
	"archive/zip"
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// modulePath is the path users `go get`; go.mod and the docs must agree.
const modulePath = "github.com/wfengine/wfengine/bindings/go"

// TestModuleConsumer proves offline what `go get` from the repository does:
// it serves this directory as version v0.1.0 of modulePath from a file://
// module proxy (the layout proxy.golang.org serves, so the module zip holds
// exactly what a download would: this directory without nested modules),
// then, in a separate consumer module outside the binding, runs
// `go get modulePath@latest`, go vet and go build on the complete program of
// docs/bindings/go.md, and runs it against the library (one job enqueued,
// served by a Go callback, completed). A second consumer uses a replace
// directive to the local checkout, as the docs describe. So the module path
// in go.mod, the package name, the import line in the docs and the files
// the module ships are checked to be consistent. Skipped with -short or
// without a go tool.
func TestModuleConsumer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two modules")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Skip("no go tool")
		}
	}
	if err := Load(); err != nil {
		t.Fatal(err)
	}
	lib, err := filepath.Abs(LibraryPath())
	if err != nil {
		t.Fatal(err)
	}
	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}

	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(gomod), "module "+modulePath+"\n") {
		t.Fatalf("go.mod does not declare module %s:\n%s", modulePath, gomod)
	}
	docs, err := os.ReadFile(filepath.Join("..", "..", "docs", "bindings", "go.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"go get " + modulePath + "@latest", "replace " + modulePath + " => "} {
		if !bytes.Contains(docs, []byte(want)) {
			t.Fatalf("docs/bindings/go.md lacks %q", want)
		}
	}
	program := docProgram(t, string(docs))
	if !strings.Contains(program, `wfengine "`+modulePath+`"`) {
		t.Fatalf("the program in the docs does not import %s as wfengine", modulePath)
	}

	// A file:// module proxy serving this directory as v0.1.0.
	tmp := t.TempDir()
	proxy := filepath.Join(tmp, "proxy")
	vdir := filepath.Join(proxy, filepath.FromSlash(modulePath), "@v")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(path, text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(vdir, "list"), "v0.1.0\n")
	write(filepath.Join(vdir, "v0.1.0.info"), `{"Version":"v0.1.0","Time":"2026-01-01T00:00:00Z"}`)
	write(filepath.Join(vdir, "v0.1.0.mod"), string(gomod))
	moduleZip(t, here, modulePath+"@v0.1.0", filepath.Join(vdir, "v0.1.0.zip"))

	env := append(os.Environ(), "GOPROXY=file://"+filepath.ToSlash(proxy), "GOSUMDB=off",
		"GONOSUMDB=", "GOPRIVATE=", "GONOPROXY=", "GOFLAGS=-modcacherw", "GOWORK=off",
		"GOTOOLCHAIN=local", "GOMODCACHE="+filepath.Join(tmp, "modcache"), "CGO_ENABLED=1",
		"WFENGINE_LIBRARY="+lib)
	run := func(dir string, name string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	consumer := func(name, gomod string) string {
		dir := filepath.Join(tmp, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		write(filepath.Join(dir, "go.mod"), gomod)
		write(filepath.Join(dir, "main.go"), program)
		return dir
	}
	check := func(dir string) {
		t.Helper()
		run(dir, goBin, "vet", "./...")
		run(dir, goBin, "build", "-o", "app", ".")
		out := run(dir, filepath.Join(dir, "app"))
		if !strings.Contains(out, "enqueued ") || !strings.Contains(out, "(attempt 1)") {
			t.Fatalf("the documented program said:\n%s", out)
		}
	}

	// 1. go get from the (local) proxy, as from the repository path.
	dir := consumer("viaproxy", "module example.com/consumer\n\ngo 1.19\n")
	run(dir, goBin, "get", modulePath+"@latest")
	if mod, _ := os.ReadFile(filepath.Join(dir, "go.mod")); !strings.Contains(string(mod), modulePath+" v0.1.0") {
		t.Fatalf("go get did not require %s v0.1.0:\n%s", modulePath, mod)
	}
	check(dir)

	// 2. A replace directive to this checkout.
	dir = consumer("viareplace", "module example.com/consumer\n\ngo 1.19\n\nrequire "+modulePath+
		" v0.0.0\n\nreplace "+modulePath+" => "+filepath.ToSlash(here)+"\n")
	check(dir)
}

// docProgram is the Go block under "## A complete program" in the docs.
func docProgram(t *testing.T, docs string) string {
	t.Helper()
	i := strings.Index(docs, "\n## A complete program")
	if i < 0 {
		t.Fatal(`docs/bindings/go.md has no "## A complete program"`)
	}
	rest := docs[i:]
	j := strings.Index(rest, "\n```go\n")
	if j < 0 {
		t.Fatal("no go block in the complete program section")
	}
	rest = rest[j+len("\n```go\n"):]
	k := strings.Index(rest, "\n```")
	if k < 0 {
		t.Fatal("unterminated go block")
	}
	return rest[:k+1]
}

// moduleZip writes dir as a module zip (every file under prefix/, as the go
// command lays them out), leaving out hidden files, subdirectories that are
// modules of their own, and shared libraries.
func moduleZip(t *testing.T, dir, prefix, dest string) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || fileExists(filepath.Join(path, "go.mod"))) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") || !d.Type().IsRegular() || strings.Contains(d.Name(), ".so") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		w, err := zw.Create(prefix + "/" + filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = os.WriteFile(dest, buf.Bytes(), 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
