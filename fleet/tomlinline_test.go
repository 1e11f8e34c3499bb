package fleet

import (
	"reflect"
	"testing"
)

func TestInlineTableLines(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []inlineTable
	}{
		{"one per line", "a = 1\ninstances = [\n  {id = \"a\", port = 1},\n  {id = \"b\"},\n]\n",
			[]inlineTable{{3, map[string]int{"id": 3, "port": 3}}, {4, map[string]int{"id": 4}}}},
		{"keys over several lines, quoted keys, nested values", "instances = [{\n  'id' = \"a\",\n  \"port\" = 1, n = [1, {x = 2}],\n  m = 3}]\n",
			[]inlineTable{{1, map[string]int{"id": 2, "port": 3, "n": 3, "m": 4}}}},
		{"strings and comments holding brackets, commas and quotes", "instances = [ # [{ not a table\n  {id = \"a,{b}\\\"\", s = 'c,}', t = \"\"\"d\n{e = 1}\"\"\", u = '''f\n'''},\n  {id = \"g\"}, # }]\n]\n",
			[]inlineTable{{2, map[string]int{"id": 2, "s": 2, "t": 2, "u": 3}}, {5, map[string]int{"id": 5}}}},
		{"a key of a table, not the root", "[x]\ninstances = [{id = \"a\"}]\n", nil},
		{"not an array", "instances = {id = \"a\"}\n", nil},
		{"an array of something else", "instances = [1, 2]\n", nil},
		{"missing", "other = [{id = \"a\"}]\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := inlineTableLines([]byte(tc.doc), "instances")
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("inlineTableLines =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}
