// SPDX-License-Identifier: Apache-2.0
#include "plugin/base/file_util.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include <sys/stat.h>

namespace blockrank {
namespace {

std::string make_temp_dir() {
  std::string tmpl = std::filesystem::temp_directory_path().string() + "/blockrank-fu-XXXXXX";
  return ::mkdtemp(tmpl.data()) != nullptr ? tmpl : std::string();
}

bool exists(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}

TEST(RemoveTreeTest, RemovesNestedDirectoriesAndFiles) {
  const std::string root = make_temp_dir();
  ASSERT_FALSE(root.empty());
  std::filesystem::create_directories(root + "/a/b/c");
  std::ofstream(root + "/a/f.txt") << "x";
  std::ofstream(root + "/a/b/c/g.bin") << "y";
  ASSERT_TRUE(remove_tree(root).is_ok());
  EXPECT_FALSE(exists(root));
}

TEST(RemoveTreeTest, MissingPathIsNotAnErrorAndAFileIsRemoved) {
  const std::string root = make_temp_dir();
  EXPECT_TRUE(remove_tree(root + "/does-not-exist").is_ok());
  std::ofstream(root + "/file") << "z";
  ASSERT_TRUE(remove_tree(root + "/file").is_ok());
  EXPECT_FALSE(exists(root + "/file"));
  ASSERT_TRUE(remove_tree(root).is_ok());
}

TEST(RemoveTreeTest, DoesNotFollowSymbolicLinks) {
  const std::string root = make_temp_dir(), outside = make_temp_dir();
  std::ofstream(outside + "/keep.txt") << "keep";
  std::filesystem::create_directories(root + "/d");
  ASSERT_EQ(::symlink(outside.c_str(), (root + "/d/link").c_str()), 0);
  ASSERT_TRUE(remove_tree(root).is_ok());
  EXPECT_FALSE(exists(root));
  EXPECT_TRUE(exists(outside + "/keep.txt"));  // the link went, its target stayed
  ASSERT_TRUE(remove_tree(outside).is_ok());
}

TEST(RemoveTreeTest, ReportsTheEntryItCannotRemove) {
  if (::geteuid() == 0) {
    GTEST_SKIP() << "running as root: permissions do not stop removal";
  }
  const std::string root = make_temp_dir();
  std::filesystem::create_directories(root + "/locked");
  std::ofstream(root + "/locked/f") << "f";
  ASSERT_EQ(::chmod((root + "/locked").c_str(), 0500), 0);
  const Status s = remove_tree(root);
  EXPECT_EQ(s.code(), StatusCode::kIOError);
  EXPECT_NE(s.message().find("locked/f"), std::string::npos) << s.message();
  ::chmod((root + "/locked").c_str(), 0700);
  EXPECT_TRUE(remove_tree(root).is_ok());
}

}  // namespace
}  // namespace blockrank
