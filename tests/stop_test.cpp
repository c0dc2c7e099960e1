#include "generate/stop.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "zaya/error.h"

namespace {

using zaya::StopStringMatcher;

struct Outcome {
  std::string text;
  bool stopped = false;
  std::string stop;
  std::vector<std::string> pieces;  // what each feed returned
};

// Feeds `text` in pieces of `chunk` bytes, then finishes.
Outcome run(const std::vector<std::string>& stops, const std::string& text, size_t chunk) {
  StopStringMatcher m(stops);
  Outcome o;
  for (size_t i = 0; i < text.size(); i += chunk) {
    auto r = m.feed(std::string_view(text).substr(i, chunk));
    o.pieces.push_back(r.text);
    o.text += r.text;
    if (r.stopped && !o.stopped) o.stopped = true, o.stop = r.stop;
  }
  o.text += m.finish();
  return o;
}

void expect_all_chunkings(const std::vector<std::string>& stops, const std::string& text, const std::string& want,
                          bool want_stop) {
  for (size_t chunk = 1; chunk <= text.size() + 1; ++chunk) {
    auto o = run(stops, text, chunk);
    EXPECT_EQ(o.text, want) << "chunk " << chunk;
    EXPECT_EQ(o.stopped, want_stop) << "chunk " << chunk;
    for (const auto& s : stops)
      for (const auto& piece : o.pieces) EXPECT_EQ(piece.find(s), std::string::npos) << "leaked " << s;
  }
}

TEST(StopString, SplitAcrossOneCharPiecesNeverLeaks) {
  const std::string text = "Hello ###END### world";
  auto o = run({"###END###"}, text, 1);
  EXPECT_EQ(o.text, "Hello ");
  EXPECT_TRUE(o.stopped);
  EXPECT_EQ(o.stop, "###END###");
  // Nothing of the stop string was ever emitted, not even its first '#'.
  std::string seen;
  for (const auto& p : o.pieces) {
    seen += p;
    EXPECT_EQ(seen.find('#'), std::string::npos);
  }
  expect_all_chunkings({"###END###"}, text, "Hello ", true);
}

TEST(StopString, PartialPrefixIsFlushedAtEnd) {
  StopStringMatcher m({"###"});
  auto r = m.feed("abc##");
  EXPECT_EQ(r.text, "abc");
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(m.held(), "##");
  EXPECT_EQ(m.finish(), "##");
  expect_all_chunkings({"###"}, "abc##", "abc##", false);
  // A held prefix that turns out not to match is released as soon as that is known.
  StopStringMatcher m2({"<|end|>"});
  EXPECT_EQ(m2.feed("a <|en").text, "a ");
  EXPECT_EQ(m2.feed("x").text, "<|enx");
}

TEST(StopString, MultipleStopStringsFirstCompletedWins) {
  // "lo w" completes (at byte 7) before "world" (byte 11).
  expect_all_chunkings({"world", "lo w"}, "hello world", "hel", true);
  auto o = run({"world", "lo w"}, "hello world", 100);
  EXPECT_EQ(o.stop, "lo w");
  // Same end: the longer (earlier starting) one is reported.
  auto o2 = run({"b", "ab"}, "xxab", 100);
  EXPECT_EQ(o2.text, "xx");
  EXPECT_EQ(o2.stop, "ab");
  expect_all_chunkings({"\n\n", "User:", "</s>"}, "One.\nTwo.\nUser: hi\n\nmore", "One.\nTwo.\n", true);
}

TEST(StopString, OverlappingSelfPrefix) {
  expect_all_chunkings({"aab"}, "xaaab tail", "xa", true);
  expect_all_chunkings({"abab"}, "abaabababx", "aba", true);
}

TEST(StopString, NothingAfterStop) {
  StopStringMatcher m({"STOP"});
  auto r = m.feed("abcST");
  EXPECT_EQ(r.text, "abc");
  r = m.feed("OPdef");
  EXPECT_EQ(r.text, "");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.stop, "STOP");
  r = m.feed("more");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(m.finish(), "");
  m.reset();
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.feed("ok").text, "ok");
}

TEST(StopString, Utf8PiecesAreWholeCharacters) {
  const std::string text = "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80!";  // héllo € 😀!
  for (size_t chunk = 1; chunk <= 4; ++chunk) {
    auto o = run({}, text, chunk);
    EXPECT_EQ(o.text, text);
    for (const auto& p : o.pieces) EXPECT_EQ(zaya::utf8_complete_prefix(p), p.size()) << "chunk " << chunk;
  }
  // Multi-byte stop strings.
  expect_all_chunkings({"\xE2\x82\xAC"}, text, "h\xC3\xA9llo ", true);
  // A stream ending mid-character still gives back every byte.
  EXPECT_EQ(run({}, "ab\xE2\x82", 1).text, "ab\xE2\x82");
  EXPECT_EQ(zaya::utf8_complete_prefix("ab\xE2\x82"), 2u);
  EXPECT_EQ(zaya::utf8_complete_prefix("\x80\x80"), 2u);  // invalid bytes are not held
}

TEST(StopString, NoStopStringsPassThroughAndEmptyRejected) {
  expect_all_chunkings({}, "plain text", "plain text", false);
  EXPECT_THROW(StopStringMatcher({"ok", ""}), zaya::Error);
  zaya::StopTokens t{{1, 106}};
  EXPECT_TRUE(t.contains(106));
  EXPECT_FALSE(t.contains(2));
}

}  // namespace
