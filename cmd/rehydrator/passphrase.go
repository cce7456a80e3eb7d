package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// passwordEnv is the variable cosign reads the key passphrase from; the same here, so that
// one setting serves both tools.
const passwordEnv = "COSIGN_PASSWORD"

// passphrase returns $COSIGN_PASSWORD when it is set (even empty), else asks on the terminal
// without echo (twice when confirm). It never prompts when standard input is not a terminal:
// a script gets an error naming the variable instead of a hang.
func passphrase(what string, confirm bool) ([]byte, error) {
	if v, ok := os.LookupEnv(passwordEnv); ok {
		return []byte(v), nil
	}
	if !stdinIsTerminal() {
		return nil, fmt.Errorf("%s needs a passphrase: set %s (it may be empty) or run on a terminal", what, passwordEnv)
	}
	p, err := readHidden(fmt.Sprintf("Enter passphrase for %s: ", what))
	if err != nil {
		return nil, err
	}
	if confirm {
		again, err := readHidden("Enter it again: ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p, again) {
			return nil, errors.New("the passphrases differ: run keygen again")
		}
	}
	return p, nil
}

// stdinIsTerminal asks the terminal driver: /dev/null is a character device too.
func stdinIsTerminal() bool {
	_, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS)
	return err == nil
}

// readHidden prints prompt on stderr and reads one line from the terminal on stdin with echo
// turned off, restoring the terminal afterwards.
func readHidden(prompt string) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprint(os.Stderr, prompt)
	line, err := bufio.NewReader(os.Stdin).ReadBytes('\n')
	fmt.Fprintln(os.Stderr)
	if err != nil && len(line) == 0 {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	return bytes.TrimRight(line, "\r\n"), nil
}
