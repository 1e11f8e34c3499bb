package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// tomlError turns a decoding error into one that leads with the line it
// happened on, without the decoder's "toml: " prefix.
func tomlError(err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)
	}
	return errors.New(strings.TrimPrefix(err.Error(), "toml: "))
}

// linePrefix returns "line N: " for the line key is set on in data. A key
// absent from the document, such as a required one left out, is placed at
// its nearest enclosing table; "" means no part of it is in the document.
func linePrefix(data []byte, key toml.Key) string {
	for i := len(key); i > 0; i-- {
		if n := keyLine(data, key[:i]); n > 0 {
			return fmt.Sprintf("line %d: ", n)
		}
	}
	return ""
}

// errKeyReached stops decoding once the key looked for is reached.
var errKeyReached = errors.New("key reached")

// lineProbe fails to decode anything, so the TOML decoder reports the
// position of the key it sits under.
type lineProbe struct{}

// UnmarshalTOML implements toml.Unmarshaler.
func (lineProbe) UnmarshalTOML(any) error { return errKeyReached }

// keyLine returns the line key is defined on in the TOML document data, or 0
// when it is not there. The decoder keeps key positions to itself, so keyLine
// decodes data into a struct that holds only that key path with a probe at
// its end and reads the line off the probe's error.
func keyLine(data []byte, key toml.Key) int {
	if len(key) == 0 {
		return 0
	}
	typ := reflect.TypeOf(lineProbe{})
	for i := len(key) - 1; i >= 0; i-- {
		typ = reflect.StructOf([]reflect.StructField{{
			Name: "F",
			Type: typ,
			Tag:  reflect.StructTag("toml:" + strconv.Quote(key[i])),
		}})
	}
	_, err := toml.Decode(string(data), reflect.New(typ).Interface())
	var pe toml.ParseError
	if errors.As(err, &pe) && pe.Message == errKeyReached.Error() {
		return pe.Position.Line
	}
	return 0
}
