fn main() {
    eprintln!("terraform-provider-hsw: not built yet");
    std::process::exit(1);
}
