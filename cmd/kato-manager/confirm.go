package main

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/kato-manager/kato-manager/textview"
)

// ask puts a yes/no question when standard input is a terminal: it says
// whether it asked, and whether the answer was yes ("y" or "yes", in any
// case; anything else, and no answer, is no). Off a terminal it asks
// nothing, so that scripts never wait for an answer.
func (a *app) ask(question string) (asked, yes bool) {
	if a.stdin == nil || !textview.Terminal(a.stdin) {
		return false, false
	}
	fmt.Fprintf(a.stdout, "%s [y/N] ", question)
	line, _ := bufio.NewReader(a.stdin).ReadString('\n')
	return true, strings.HasPrefix(strings.ToLower(strings.TrimSpace(line)), "y")
}

// confirm asks before a destructive bulk action, unless --yes was given.
// Off a terminal the action goes ahead, as stop --all's question about the
// shared services is not put there either; on a terminal anything but yes
// refuses it.
func (a *app) confirm(yes bool, question string) error {
	if yes {
		return nil
	}
	if asked, ok := a.ask(question); asked && !ok {
		return errNotConfirmed
	}
	return nil
}

// errNotConfirmed is a destructive action the user declined: exit 1.
var errNotConfirmed = errors.New("not confirmed: nothing changed (--yes answers yes)")

// yesFlagHelp is the help of a destructive bulk action's --yes.
const yesFlagHelp = "do not ask for confirmation on a terminal (off a terminal nothing is asked)"
