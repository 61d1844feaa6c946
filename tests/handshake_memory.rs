//! What a handshake keeps, counted by a global allocator: it must be small and proportional
//! to what the request sent, however the query repeats itself.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use socketio_stack::Handshake;

/// The system allocator, counting the bytes live on each thread.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged; the counter is a
// const-initialized thread-local, which itself never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.with(|l| l.set(l.get() + layout.size() as isize));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.with(|l| l.set(l.get() - layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.with(|l| l.set(l.get() + new_size as isize - layout.size() as isize));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

#[test]
fn a_64_kb_query_of_repeated_keys_costs_about_its_own_size() {
    // 64,000 bytes: http caps a URI just under 64 KiB.
    let query = "a&".repeat(32_000);
    let uri = format!("/io/?EIO=4&transport=polling&{query}");
    let (parts, ()) = http::Request::get(uri.as_str())
        .header("host", "x")
        .body(())
        .unwrap()
        .into_parts();
    let before = live();
    let hs = Handshake::from_parts(&parts, serde_json::Value::Null);
    let kept = live() - before;
    eprintln!(
        "a handshake with a {}-byte query keeps {kept} bytes",
        query.len()
    );
    // The URL itself (64 KB) is kept; the parsed query adds nothing of its size.
    assert!(kept < 2 * uri.len() as isize, "{kept} bytes kept");
    assert_eq!(hs.query_param("EIO").as_deref(), Some("4"));
    assert_eq!(hs.query_param("a").as_deref(), Some(""));
}
