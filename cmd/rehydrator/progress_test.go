package main

import (
	"os"
	"testing"
)

// /dev/null is a character device but no terminal: `rehydrate - ... > /dev/null` must run.
func TestIsTerminalDevNull(t *testing.T) {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Fatalf("%s taken for a terminal", os.DevNull)
	}
}
