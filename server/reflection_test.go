package server_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/bufbuild/protocompile"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionalphapb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
)

// TestReflectionServesTheProto checks that reflection serves exactly the
// descriptor proto/ compiles to, comments included: grpcurl describe
// shows the documentation, and what the binary serves cannot drift from
// proto/ (a proto edit without buf generate fails here).
func TestReflectionServesTheProto(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	want := compileProto(t)
	if len(want.GetSourceCodeInfo().GetLocation()) == 0 {
		t.Fatal("proto/ compiled without source info; the comparison would not cover comments")
	}

	stream, err := reflectionpb.NewServerReflectionClient(ts.conn).ServerReflectionInfo(ts.as(""))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "usersig.v1.GenerateUserSigRequest"},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	got := servedFile(t, resp.GetFileDescriptorResponse().GetFileDescriptorProto(), want.GetName())
	if !sameFile(got, want) {
		t.Errorf("reflection serves a descriptor that differs from proto/ (run buf generate):\nserved %d source locations, proto/ has %d",
			len(got.GetSourceCodeInfo().GetLocation()), len(want.GetSourceCodeInfo().GetLocation()))
	}
	comment := fieldComment(got, "GenerateUserSigRequest", "user_id")
	if !strings.HasPrefix(comment, " The user to log in: 1 to 32 bytes of a-z A-Z 0-9 _ -.") {
		t.Errorf("GenerateUserSigRequest.user_id is served with the comment %q", comment)
	}

	// The v1alpha service, which grpcurl v1.9 and older clients ask for
	// first, serves the same.
	alpha, err := reflectionalphapb.NewServerReflectionClient(ts.conn).ServerReflectionInfo(ts.as(""))
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 v1alpha is deprecated, and still what older clients ask for: it is under test
	byName := &reflectionalphapb.ServerReflectionRequest_FileByFilename{FileByFilename: want.GetName()}
	//lint:ignore SA1019 as above
	if err := alpha.Send(&reflectionalphapb.ServerReflectionRequest{MessageRequest: byName}); err != nil {
		t.Fatal(err)
	}
	aresp, err := alpha.Recv()
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 as above
	if got := servedFile(t, aresp.GetFileDescriptorResponse().GetFileDescriptorProto(), want.GetName()); !sameFile(got, want) {
		t.Errorf("v1alpha reflection serves a descriptor that differs from proto/")
	}
}

// compileProto compiles proto/usersig/v1/usersig.proto as buf does, with
// its comments.
func compileProto(t *testing.T) *descriptorpb.FileDescriptorProto {
	t.Helper()
	c := protocompile.Compiler{
		Resolver:       protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{"../proto"}}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	files, err := c.Compile(context.Background(), "usersig/v1/usersig.proto")
	if err != nil {
		t.Fatalf("compiling proto/: %v", err)
	}
	return protodesc.ToFileDescriptorProto(files[0])
}

// servedFile finds the file named name among serialized descriptors.
func servedFile(t *testing.T, files [][]byte, name string) *descriptorpb.FileDescriptorProto {
	t.Helper()
	for _, b := range files {
		fd := new(descriptorpb.FileDescriptorProto)
		if err := proto.Unmarshal(b, fd); err != nil {
			t.Fatal(err)
		}
		if fd.GetName() == name {
			return fd
		}
	}
	t.Fatalf("reflection did not serve %s", name)
	return nil
}

// fieldComment is the leading comment of a field of a top-level message.
func fieldComment(fd *descriptorpb.FileDescriptorProto, message, field string) string {
	for mi, m := range fd.GetMessageType() {
		if m.GetName() != message {
			continue
		}
		for fi, f := range m.GetField() {
			if f.GetName() != field {
				continue
			}
			// Path: message_type (4), index, field (2), index.
			for _, loc := range fd.GetSourceCodeInfo().GetLocation() {
				p := loc.GetPath()
				if len(p) == 4 && p[0] == 4 && p[1] == int32(mi) && p[2] == 2 && p[3] == int32(fi) {
					return loc.GetLeadingComments()
				}
			}
		}
	}
	return ""
}

// sameFile reports whether two file descriptors are equal, comments
// included, whatever the order of their source locations (protoc and
// protocompile list them in different orders).
func sameFile(a, b *descriptorpb.FileDescriptorProto) bool {
	a, b = proto.CloneOf(a), proto.CloneOf(b)
	for _, fd := range []*descriptorpb.FileDescriptorProto{a, b} {
		locs := fd.GetSourceCodeInfo().GetLocation()
		slices.SortFunc(locs, func(x, y *descriptorpb.SourceCodeInfo_Location) int {
			if c := slices.Compare(x.GetPath(), y.GetPath()); c != 0 {
				return c
			}
			return slices.Compare(x.GetSpan(), y.GetSpan())
		})
	}
	return proto.Equal(a, b)
}
