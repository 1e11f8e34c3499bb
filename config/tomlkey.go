package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/kato-manager/kato-manager/internal/suggest"
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
		if n := KeyLine(data, key[:i]); n > 0 {
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

// KeyLine returns the line key is defined on in the TOML document data, or 0
// when it is not there. The decoder keeps key positions to itself, so KeyLine
// decodes data into a struct that holds only that key path with a probe at
// its end and reads the line off the probe's error.
func KeyLine(data []byte, key toml.Key) int {
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

// unknownKeyError is the error for a key of kato.toml that no setting has:
// the key, the table it is not a key of and the nearest keys it has.
func unknownKeyError(key toml.Key) error {
	parent := key[:len(key)-1]
	table := "kato.toml"
	if len(parent) > 0 {
		table = "[" + parent.String() + "]"
	}
	msg := fmt.Sprintf("unknown key %s: %s has no such key", key, table)
	known := tableKeys(reflect.TypeFor[Config](), parent)
	if len(parent) == 0 {
		// [templates.NAME] is read on its own, by the fleet file's rules.
		known = append(known, "templates")
	}
	if near := suggest.Nearest(key[len(key)-1], known); len(near) > 0 {
		for i, k := range near {
			near[i] = append(parent[:len(parent):len(parent)], k).String()
		}
		msg += "; did you mean " + suggest.OrList(near) + "?"
	}
	return errors.New(msg)
}

// tableKeys returns the keys the table at path can hold when TOML is decoded
// into a value of type t; nil when path leads to no table of named keys.
func tableKeys(t reflect.Type, path toml.Key) []string {
	for _, part := range path {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			f, ok := structField(t, part)
			if !ok {
				return nil
			}
			t = f.Type
		default:
			return nil
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for _, f := range reflect.VisibleFields(t) {
		if name := tomlName(f); name != "" && f.IsExported() && !f.Anonymous {
			keys = append(keys, name)
		}
	}
	return keys
}

// structField is the field of struct type t that TOML key decodes into.
func structField(t reflect.Type, key string) (reflect.StructField, bool) {
	for _, f := range reflect.VisibleFields(t) {
		if f.IsExported() && !f.Anonymous && tomlName(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// tomlName is the key of field f in TOML: its tag's name, else its own; ""
// for a field TOML leaves alone.
func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return f.Name
	}
	return name
}
