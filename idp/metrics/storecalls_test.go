package metrics

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"testing"
)

// TestEveryStoreMethodTimed fails when a method of store.Store has no
// timing wrapper in storecalls.go (it would still work, untimed).
func TestEveryStoreMethodTimed(t *testing.T) {
	fset := token.NewFileSet()
	iface, err := parser.ParseFile(fset, filepath.Join("..", "store", "store.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	ast.Inspect(iface, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "Store" {
			return true
		}
		it, ok := ts.Type.(*ast.InterfaceType)
		if !ok {
			t.Fatalf("store.Store is not an interface")
		}
		for _, m := range it.Methods.List {
			for _, name := range m.Names { // embedded interfaces have no names
				if name.Name != "Close" { // once per process: not worth a series
					want = append(want, name.Name)
				}
			}
		}
		return false
	})
	if len(want) == 0 {
		t.Fatal("found no methods in store.Store")
	}
	calls, err := parser.ParseFile(fset, "storecalls.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, d := range calls.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv != nil {
			have[fd.Name.Name] = true
		}
	}
	for _, name := range want {
		if !have[name] {
			t.Errorf("store.Store.%s has no timing wrapper in storecalls.go", name)
		}
	}
}
