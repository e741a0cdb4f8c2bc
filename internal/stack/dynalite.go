package stack

import (
	_ "embed"
	"os"
	"path/filepath"
)

// dynaliteServer is the node entry script the stack runs dynalite with: it
// contains the request errors that end a plain `dynalite` (cli.js) process
// (see the script's header) and keeps the data on disk.
//
//go:embed dynalite-server.js
var dynaliteServer []byte

// dynaliteScript writes the entry script into the stack's folder and returns
// its path.
func (s *Stack) dynaliteScript() (string, error) {
	p := filepath.Join(s.cfg.Dir, "dynalite-server.js")
	return p, os.WriteFile(p, dynaliteServer, 0o644)
}

// dynaliteData is the LevelDB folder of a dynalite server. It outlives the
// server's restarts (so a restart loses nothing) and is emptied when the
// stack starts.
func (s *Stack) dynaliteData(sv *server) string {
	return filepath.Join(s.cfg.Dir, sv.Name, "data")
}
