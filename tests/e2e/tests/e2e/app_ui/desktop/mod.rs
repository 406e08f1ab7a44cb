//! The desktop around the app under test, as far as the app can tell: on the test's own
//! session bus, a panel that hosts tray icons (the StatusNotifierItem protocol with its
//! dbusmenu menus, as KDE's and GNOME's AppIndicator hosts speak it) and a notification
//! server (org.freedesktop.Notifications); on the X display, closing a window the way a
//! window manager does (WM_DELETE_WINDOW) and telling whether it is on screen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{self, ConnectionExt as _, MapState};
use x11rb::wrapper::ConnectionExt as _;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

/// A notification the app showed.
#[derive(Debug, Clone)]
pub struct Notification {
    pub id: u32,
    pub summary: String,
    pub body: String,
    /// The connection that sent it (where its signals go).
    sender: String,
}

#[derive(Default)]
struct Seen {
    /// Tray items: (bus name, object path).
    items: Vec<(String, String)>,
    notifications: Vec<Notification>,
}

/// The panel and the notification server, serving on a session bus.
pub struct Shell {
    conn: zbus::Connection,
    seen: Arc<Mutex<Seen>>,
}

struct Watcher(Arc<Mutex<Seen>>);

#[zbus::interface(name = "org.kde.StatusNotifierWatcher")]
impl Watcher {
    async fn register_status_notifier_item(&self, service: String, #[zbus(header)] header: zbus::message::Header<'_>) {
        let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
        // Items register by object path (AppIndicator) or by bus name.
        let item =
            if service.starts_with('/') { (sender, service) } else { (service, "/StatusNotifierItem".to_owned()) };
        eprintln!("desktop: tray item registered: {item:?}");
        self.0.lock().unwrap().items.push(item);
    }

    async fn register_status_notifier_host(&self, _service: String) {}

    #[zbus(property)]
    async fn registered_status_notifier_items(&self) -> Vec<String> {
        self.0.lock().unwrap().items.iter().map(|(name, path)| format!("{name}{path}")).collect()
    }

    #[zbus(property)]
    async fn is_status_notifier_host_registered(&self) -> bool {
        true
    }

    #[zbus(property)]
    async fn protocol_version(&self) -> i32 {
        0
    }
}

struct Notifications {
    seen: Arc<Mutex<Seen>>,
    next: AtomicU32,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Notifications {
    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
        _app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        _hints: HashMap<String, OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        eprintln!("desktop: notification: {summary}: {body}");
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
        self.seen.lock().unwrap().notifications.push(Notification { id, summary, body, sender });
        id
    }

    async fn close_notification(&self, _id: u32) {}

    async fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into(), "actions".into()]
    }

    async fn get_server_information(&self) -> (String, String, String, String) {
        ("confer-test-desktop".into(), "confer".into(), "1".into(), "1.2".into())
    }
}

/// One entry of the tray's menu.
#[derive(Debug, Clone)]
pub struct MenuEntry {
    pub id: i32,
    pub label: String,
    pub enabled: bool,
}

impl Shell {
    pub async fn start(bus: &str) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let conn = zbus::connection::Builder::address(bus)
            .expect("a bus address")
            .serve_at("/StatusNotifierWatcher", Watcher(seen.clone()))
            .unwrap()
            .serve_at("/org/freedesktop/Notifications", Notifications { seen: seen.clone(), next: AtomicU32::new(0) })
            .unwrap()
            .name("org.kde.StatusNotifierWatcher")
            .unwrap()
            .name("org.freedesktop.Notifications")
            .unwrap()
            .build()
            .await
            .expect("the test desktop on the session bus");
        Self { conn, seen }
    }

    /// The app's tray item, once it registered.
    async fn item(&self, timeout: Duration) -> (String, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(item) = self.seen.lock().unwrap().items.last().cloned() {
                return item;
            }
            assert!(Instant::now() < deadline, "no tray icon registered with the panel");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The bus name of the app's tray item (it goes when the app goes).
    pub async fn tray_owner(&self, timeout: Duration) -> String {
        self.item(timeout).await.0
    }

    /// Whether a bus name still has an owner.
    pub async fn has_owner(&self, name: &str) -> bool {
        let dbus = zbus::fdo::DBusProxy::new(&self.conn).await.unwrap();
        dbus.name_has_owner(name.try_into().unwrap()).await.unwrap_or(false)
    }

    async fn menu_proxy(&self, timeout: Duration) -> zbus::Proxy<'static> {
        let (name, path) = self.item(timeout).await;
        let item = zbus::Proxy::new(&self.conn, name.clone(), path, "org.kde.StatusNotifierItem").await.unwrap();
        let menu: OwnedObjectPath = item.get_property("Menu").await.expect("the tray item has a menu");
        zbus::Proxy::new(&self.conn, name, menu, "com.canonical.dbusmenu").await.unwrap()
    }

    /// The tray's menu as the panel would show it (visible entries with a label).
    pub async fn menu(&self, timeout: Duration) -> Vec<MenuEntry> {
        let proxy = self.menu_proxy(timeout).await;
        type Layout = (i32, HashMap<String, OwnedValue>, Vec<OwnedValue>);
        let (_revision, (_, _, children)): (u32, Layout) =
            proxy.call("GetLayout", &(0i32, -1i32, Vec::<String>::new())).await.expect("the tray's menu layout");
        let mut entries = Vec::new();
        for child in &children {
            walk(child, &mut entries);
        }
        entries
    }

    /// Waits until the menu has an entry whose label satisfies `pred`, and returns it.
    pub async fn menu_entry(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> MenuEntry {
        let deadline = Instant::now() + timeout;
        loop {
            let menu = self.menu(timeout).await;
            if let Some(e) = menu.iter().find(|e| pred(&e.label)) {
                return e.clone();
            }
            if Instant::now() > deadline {
                let labels: Vec<_> = menu.iter().map(|e| e.label.as_str()).collect();
                panic!("the tray's menu has no {what}: {labels:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Clicks the tray's menu entry labelled `label`, as the panel does.
    pub async fn click(&self, label: &str, timeout: Duration) {
        let entry = self.menu_entry(&format!("entry {label:?}"), timeout, |l| l == label).await;
        assert!(entry.enabled, "the tray's {label:?} is disabled");
        let proxy = self.menu_proxy(timeout).await;
        let _: () = proxy
            .call("Event", &(entry.id, "clicked", Value::from(0i32), 0u32))
            .await
            .unwrap_or_else(|e| panic!("clicking {label:?} in the tray: {e}"));
    }

    /// Waits for a notification matching `pred`.
    pub async fn notification(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Notification) -> bool,
    ) -> Notification {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(n) = self.seen.lock().unwrap().notifications.iter().find(|n| pred(n)) {
                return n.clone();
            }
            if Instant::now() > deadline {
                let all = self.seen.lock().unwrap().notifications.clone();
                panic!("no notification {what}; shown: {all:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Shell {
    /// Clicks a notification, as the notification server reports it (its `default` action).
    pub async fn click_notification(&self, notification: &Notification) {
        self.conn
            .emit_signal(
                Some(notification.sender.as_str()),
                "/org/freedesktop/Notifications",
                "org.freedesktop.Notifications",
                "ActionInvoked",
                &(notification.id, "default"),
            )
            .await
            .expect("the click is signalled");
    }
}

/// A dbusmenu item `(ia{sv}av)` and its children, in menu order.
fn walk(value: &Value<'_>, out: &mut Vec<MenuEntry>) {
    let value = match value {
        Value::Value(inner) => inner.as_ref(),
        other => other,
    };
    let Value::Structure(item) = value else { return };
    let fields = item.fields();
    let Some(Value::I32(id)) = fields.first() else { return };
    let (mut label, mut enabled, mut visible, mut separator) = (String::new(), true, true, false);
    if let Some(Value::Dict(props)) = fields.get(1) {
        for (key, v) in props.iter() {
            let v = match v {
                Value::Value(inner) => inner.as_ref(),
                other => other,
            };
            match (key, v) {
                (Value::Str(k), Value::Str(s)) if k.as_str() == "label" => label = without_mnemonic(s.as_str()),
                (Value::Str(k), Value::Str(s)) if k.as_str() == "type" => separator = s.as_str() == "separator",
                (Value::Str(k), Value::Bool(b)) if k.as_str() == "enabled" => enabled = *b,
                (Value::Str(k), Value::Bool(b)) if k.as_str() == "visible" => visible = *b,
                _ => {}
            }
        }
    }
    if visible && !separator && !label.is_empty() {
        out.push(MenuEntry { id: *id, label, enabled });
    }
    if let Some(Value::Array(children)) = fields.get(2) {
        for child in children.inner() {
            walk(child, out);
        }
    }
}

/// A GTK menu label as shown: `_x` marks a mnemonic, `__` is an underscore.
fn without_mnemonic(label: &str) -> String {
    let mut shown = String::with_capacity(label.len());
    let mut chars = label.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            shown.push(c);
        } else if chars.peek() == Some(&'_') {
            chars.next();
            shown.push('_');
        }
    }
    shown
}

/// The app's top-level window on an X display, as a window manager sees it.
pub struct AppWindow {
    conn: x11rb::rust_connection::RustConnection,
    window: xproto::Window,
    protocols: xproto::Atom,
    delete: xproto::Atom,
}

impl AppWindow {
    /// The top-level window titled `title` that takes WM_DELETE_WINDOW.
    pub fn find(display: &str, title: &str, timeout: Duration) -> Self {
        let (conn, screen) = x11rb::connect(Some(display)).expect("the X display");
        let root = conn.setup().roots[screen].root;
        let atom = |name: &str| conn.intern_atom(false, name.as_bytes()).unwrap().reply().unwrap().atom;
        let (protocols, delete, net_name, utf8) =
            (atom("WM_PROTOCOLS"), atom("WM_DELETE_WINDOW"), atom("_NET_WM_NAME"), atom("UTF8_STRING"));
        let deadline = Instant::now() + timeout;
        loop {
            let tree = conn.query_tree(root).unwrap().reply().unwrap();
            let found = tree.children.iter().copied().find(|&w| {
                let name = conn.get_property(false, w, net_name, utf8, 0, 256).ok().and_then(|c| c.reply().ok());
                let takes_delete = conn
                    .get_property(false, w, protocols, xproto::AtomEnum::ATOM, 0, 32)
                    .ok()
                    .and_then(|c| c.reply().ok())
                    .and_then(|r| r.value32().map(|mut v| v.any(|a| a == delete)))
                    .unwrap_or(false);
                name.is_some_and(|n| n.value == title.as_bytes()) && takes_delete
            });
            if let Some(window) = found {
                return Self { conn, window, protocols, delete };
            }
            assert!(Instant::now() < deadline, "no window titled {title:?} on {display}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asks the window to close, as the close button of a window manager does.
    pub fn close(&self) {
        let event = xproto::ClientMessageEvent::new(32, self.window, self.protocols, [self.delete, 0, 0, 0, 0]);
        self.conn.send_event(false, self.window, xproto::EventMask::NO_EVENT, event).unwrap();
        self.conn.sync().unwrap();
    }

    pub fn is_shown(&self) -> bool {
        let attrs = self.conn.get_window_attributes(self.window).unwrap().reply().unwrap();
        attrs.map_state == MapState::VIEWABLE
    }

    /// Waits until the window is shown (`true`) or hidden.
    pub fn wait_shown(&self, shown: bool, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.is_shown() != shown {
            assert!(Instant::now() < deadline, "the window is still {}", if shown { "hidden" } else { "shown" });
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Presses a key combination (`ctrl+alt+k`) on the display, as the keyboard would.
pub fn press_keys(display: &str, keys: &str) {
    let status = std::process::Command::new("xdotool")
        .args(["key", keys])
        .env("DISPLAY", display)
        .status()
        .expect("xdotool is installed (scripts/setup.sh)");
    assert!(status.success(), "xdotool key {keys}");
}
